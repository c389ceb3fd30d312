"""Training data for the bundled models, read from ../shared/data.

Inputs are normalised exactly as the engine will normalise them at inference
(:func:`cellrt.kernels.stitch.percentile_normalization`, per channel and per
field), so the exported model sees the same distribution in both places.

**The nuclei split** (:func:`dsb_split`, :func:`dsb_ids`) is stratified by
group (:func:`dsb_group`, the source an image's shape tells): held out are
the images of the hash split (:func:`is_held_out`, 20 % of ids, stable
across machines and file orders) plus, in each group with fewer than
``ceil(0.2 * n)`` of its ``n`` images held out that way, the remaining
images of lowest hash (the same hash, :func:`id_hash`) until it has
``ceil(0.2 * n)``. A hash-held-out image is never moved into training, so
everything chosen from the hash split before (the demo plate's fields, the
drift references) stays unseen; on dsb2018_fluo the split holds out 120 of
541 images (113 by hash, 7 more in the groups 520x696, 603x1272, 256x320
and 1040x1388). ``split="hash"`` gives the plain hash split.

"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..kernels.stitch import percentile_normalization

PERCENTILES = (1.0, 99.8)
NUCLEI_CLASSES = ("background", "nucleus", "boundary")
ISL_PHASE_PLANES = ("phase_z03", "phase_z06", "phase_z09")


def normalize(image: np.ndarray, percentiles=PERCENTILES) -> np.ndarray:
    """(C, H, W) image -> float32, each channel's ``percentiles`` mapped to 0 and 1."""
    scale, offset = percentile_normalization(image, percentiles)
    return ((image.astype(np.float32) - offset[:, None, None]) * scale[:, None, None]).astype(np.float32)


HELD_OUT_FRACTION = 0.2


def id_hash(image_id: str) -> float:
    """The image id's hash as a number in [0, 1): the first 4 bytes of its SHA-256, little-endian."""
    digest = hashlib.sha256(image_id.encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2 ** 32


def is_held_out(image_id: str, fraction: float = HELD_OUT_FRACTION) -> bool:
    """The hash split: deterministic by a hash of the image id (stable across machines and file orders)."""
    return id_hash(image_id) < fraction


def dsb_group(shape) -> str:
    """The dsb2018_fluo image group of an image of this (H, W) shape, e.g. ``"360x360"``.

    The stage-1 images come from several sources that differ in
    magnification, nucleus size, texture and density; their shapes tell
    them apart (``../shared/data/README.md``).
    """
    height, width = (int(v) for v in shape[-2:])
    return f"{height}x{width}"


def _image_shape(path: Path) -> tuple[int, ...]:
    with tifffile.TiffFile(path) as tif:
        return tuple(tif.pages[0].shape)


def dsb_split(data_dir: Path, fraction: float = HELD_OUT_FRACTION) -> dict[str, tuple[str, bool]]:
    """Image id -> (group, held out) for dsb2018_fluo, stratified by group (module docstring).

    Held out: :func:`is_held_out` (the hash split), plus in each group the
    remaining ids of lowest :func:`id_hash` until the group has
    ``ceil(fraction * n)`` of its ``n`` images held out.
    """
    paths = sorted((Path(data_dir) / "images").glob("*.tif"))
    if not paths:
        raise FileNotFoundError(f"no images under {Path(data_dir) / 'images'}")
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(dsb_group(_image_shape(path)), []).append(path.stem)
    split = {}
    for group, ids in groups.items():
        held = {i for i in ids if is_held_out(i, fraction)}
        rest = sorted((i for i in ids if i not in held), key=lambda i: (id_hash(i), i))
        held.update(rest[:max(0, math.ceil(fraction * len(ids)) - len(held))])
        split.update({i: (group, i in held) for i in ids})
    return dict(sorted(split.items()))


def dsb_ids(data_dir: Path, held_out: bool, split: str = "stratified") -> list[str]:
    """The sorted ids of dsb2018_fluo's held-out (or training) images: ``split="stratified"``
    (:func:`dsb_split`, the bundled nuclei model's) or ``"hash"`` (:func:`is_held_out` alone)."""
    if split == "hash":
        ids = sorted(p.stem for p in (Path(data_dir) / "images").glob("*.tif"))
        if not ids:
            raise FileNotFoundError(f"no images under {Path(data_dir) / 'images'}")
        return [i for i in ids if is_held_out(i) == held_out]
    if split != "stratified":
        raise ValueError(f"dsb_ids: split should be 'stratified' or 'hash', got {split!r}")
    return [i for i, (_, held) in dsb_split(data_dir).items() if held == held_out]


def class_targets(labels: np.ndarray) -> np.ndarray:
    """Instance labels -> classes 0 background, 1 nucleus interior, 2 boundary.

    A boundary pixel belongs to an object and has a 4-neighbour with another
    value (background or a touching nucleus), so touching nuclei are
    separated by their boundaries.
    """
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = np.zeros(labels.shape, dtype=bool)
    for neighbour in (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]):
        differs |= neighbour != centre
    targets = np.where(labels > 0, np.uint8(1), np.uint8(0))
    targets[(labels > 0) & differs] = 2
    return targets


@dataclass
class Sample:
    image: np.ndarray    # (C, H, W) float32, normalised
    target: np.ndarray   # (H, W) uint8 classes, or (1, H, W) float32


def load_dsb(data_dir: Path, ids) -> list[Sample]:
    data_dir = Path(data_dir)
    samples = []
    for image_id in ids:
        image = tifffile.imread(data_dir / "images" / f"{image_id}.tif")
        labels = tifffile.imread(data_dir / "labels" / f"{image_id}.tif")
        samples.append(Sample(normalize(image[None]), class_targets(labels)))
    return samples


def load_isl(data_dir: Path, planes=ISL_PHASE_PLANES) -> tuple[np.ndarray, np.ndarray]:
    """The in-silico-labeling field: normalised phase planes (C, H, W) and DAPI (1, H, W)."""
    data_dir = Path(data_dir)
    phase = np.stack([tifffile.imread(data_dir / f"{plane}.tif") for plane in planes])
    dapi = tifffile.imread(data_dir / "dapi.tif")[None]
    return normalize(phase), normalize(dapi)


def random_crops(rng: np.random.Generator, samples: list[Sample], count: int, size: int,
                 x_limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random ``size``² crops with random flips and 90° rotations.

    ``x_limit`` keeps every crop left of that column (the held-out region of
    a single field lies to its right).
    """
    images, targets = [], []
    for _ in range(count):
        sample = samples[rng.integers(len(samples))]
        h, w = sample.image.shape[-2:]
        w = min(w, x_limit) if x_limit is not None else w
        y = int(rng.integers(0, h - size + 1))
        x = int(rng.integers(0, w - size + 1))
        image = sample.image[..., y:y + size, x:x + size]
        target = sample.target[..., y:y + size, x:x + size]
        k = int(rng.integers(4))
        flip = bool(rng.integers(2))
        image = np.rot90(image, k, axes=(-2, -1))
        target = np.rot90(target, k, axes=(-2, -1))
        if flip:
            image, target = image[..., ::-1], target[..., ::-1]
        images.append(np.ascontiguousarray(image))
        targets.append(np.ascontiguousarray(target))
    return np.stack(images), np.stack(targets)

