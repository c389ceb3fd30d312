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

**Augmentation** (:class:`Augmentation`, :func:`augmented_crops`) gives the
nuclei model a screening lab's variety of scales and imaging conditions,
deterministically for a seed: each crop is resampled by a log-uniform
factor in 0.5-3x (a region of ``size / s`` pixels is cropped first, then
resized to ``size``: the image with an antialiased bilinear filter, the
labels by nearest neighbour, and the class targets are computed after
resampling, so boundaries stay 1 px wide), rotated and flipped, and its raw
intensities go through gamma, an uneven background (ramp and low-frequency
bump, vignetting), mild blur, gain onto a sensor range with saturation, an
offset, Poisson-like and read noise and 8-bit quantisation. It is then
normalised as the engine would normalise the whole augmented field: by the
percentiles of a fixed sample of the field's pixels put through the same
intensity transform (blur aside), never by the crop's own.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..kernels.stitch import percentile_normalization
from ..pipeline.scale import equivalent_diameters

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


def read_dsb(data_dir: Path, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """One dsb2018_fluo image (uint8) and its instance labels (uint16)."""
    data_dir = Path(data_dir)
    return (tifffile.imread(data_dir / "images" / f"{image_id}.tif"),
            tifffile.imread(data_dir / "labels" / f"{image_id}.tif"))


def load_dsb(data_dir: Path, ids) -> list[Sample]:
    samples = []
    for image_id in ids:
        image, labels = read_dsb(data_dir, image_id)
        samples.append(Sample(normalize(image[None]), class_targets(labels)))
    return samples


def object_scale(data_dir: Path, ids) -> dict:
    """The ``scale`` section of a nuclei model's manifest: the median over images ``ids`` of each image's
    median equivalent diameter of its label objects, and the 10th to 75th percentiles of those medians as
    the range run without rescaling. The range stops at the 75th percentile: the large nuclei of dsb2018
    are mostly textured (granular chromatin at high magnification), and on held-out images of every
    group at x1-x3 the model does as well or better with them brought to its typical diameter
    (tools/eval_segmentation.py: F1@0.5 0.850 / 0.843 / 0.845 at x1 / x2 / x3, against 0.847 / 0.830 /
    0.830 with the 90th percentile)."""
    data_dir = Path(data_dir)
    medians = []
    for image_id in ids:
        diameters = equivalent_diameters(tifffile.imread(data_dir / "labels" / f"{image_id}.tif"))
        if diameters.size:
            medians.append(float(np.median(diameters)))
    if not medians:
        raise ValueError(f"object_scale: no labelled objects in the {len(list(ids))} images given")
    p10, p75 = np.percentile(medians, [10, 75])
    return {"object_diameter_px": round(float(np.median(medians)), 2),
            "diameter_range_px": [round(float(p10), 2), round(float(p75), 2)],
            "measured_from": f"the instance labels of the model's {len(medians)} dsb2018_fluo training images "
                             f"(stratified split): per image, the median equivalent diameter 2*sqrt(area/pi) "
                             f"of its objects; object_diameter_px is the median of these per-image medians, "
                             f"diameter_range_px their 10th to 75th percentiles"}


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


# -- augmentation for the nuclei model ---------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """What :func:`augmented_crops` varies, and how much (ranges are (low, high); ``*_p`` probabilities).

    Intensities are in units of the field's raw 99.8th percentile before the
    gain (``brightness``), and of the sensor's range (0 to 1, clipped) after it.
    """
    scale: tuple[float, float] = (0.5, 3.0)         # resampling factor, log-uniform
    native_p: float = 0.2                            # crops kept at their native scale
    intensity_p: float = 0.8                         # crops whose intensities are augmented at all
    gamma: tuple[float, float] = (0.6, 1.6)          # log-uniform, on the raw intensities
    background_p: float = 0.5
    background: tuple[float, float] = (0.0, 0.3)     # additive ramp + low-frequency bump, peak amplitude
    vignetting_p: float = 0.3
    vignetting: tuple[float, float] = (0.0, 0.5)     # illumination falls by this much at the field's corners
    blur_p: float = 0.3
    blur: tuple[float, float] = (0.3, 1.2)           # Gaussian sigma, pixels of the resampled crop
    brightness: tuple[float, float] = (0.15, 1.5)    # where the 99.8th percentile lands (log-uniform; > 1 saturates)
    offset: tuple[float, float] = (0.0, 0.1)         # camera pedestal
    noise_p: float = 0.7
    photons: tuple[float, float] = (200.0, 20000.0)  # photons at full scale (log-uniform): Poisson-like shot noise
    read_noise: tuple[float, float] = (0.0, 0.01)    # Gaussian, sensor range units
    quantize_p: float = 0.5                          # 8-bit quantisation


STATS_PIXELS = 32768


@dataclass
class Field:
    """A raw training field for :func:`augmented_crops`."""
    image: np.ndarray          # (H, W) raw intensities
    labels: np.ndarray         # (H, W) instance labels
    scale: float               # the engine's percentile normalisation of the raw field: (x - offset) * scale
    offset: float
    high: float                # raw 99.8th percentile (the brightness reference), > 0
    stats_values: np.ndarray   # (N,) raw values at fixed pixels, for the augmented field's percentiles
    stats_uv: np.ndarray       # (2, N) their positions, as fractions of the field's height and width


def load_dsb_fields(data_dir: Path, ids) -> list[Field]:
    fields = []
    for image_id in ids:
        image, labels = read_dsb(data_dir, image_id)
        scale, offset = percentile_normalization(image[None], PERCENTILES)
        h, w = image.shape
        # The same pixels whatever the seed: the field stands for itself.
        pick = np.random.default_rng(int(id_hash(image_id) * 2 ** 32))
        flat = np.sort(pick.choice(h * w, size=min(h * w, STATS_PIXELS), replace=False))
        ys, xs = np.divmod(flat, w)
        high = float(np.percentile(image, PERCENTILES[1]))
        fields.append(Field(image, labels, float(scale[0]), float(offset[0]), high if high > 0 else 1.0,
                            image.ravel()[flat].astype(np.float32),
                            np.stack([(ys + 0.5) / h, (xs + 0.5) / w]).astype(np.float32)))
    return fields


def _log_uniform(rng: np.random.Generator, bounds) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _draw_intensity(rng: np.random.Generator, aug: Augmentation) -> dict:
    """One field's imaging conditions (every draw made, whether used or not, so the stream stays aligned)."""
    u = rng.random(6)
    return {
        "gamma": _log_uniform(rng, aug.gamma),
        "background": rng.uniform(*aug.background) if u[0] < aug.background_p else 0.0,
        "ramp_angle": rng.uniform(0, 2 * math.pi), "ramp_mix": rng.uniform(),
        "bump_uv": rng.uniform(0, 1, 2), "bump_width": rng.uniform(0.2, 0.8),
        "vignetting": rng.uniform(*aug.vignetting) if u[1] < aug.vignetting_p else 0.0,
        "vignette_uv": rng.uniform(0.3, 0.7, 2),
        "blur": rng.uniform(*aug.blur) if u[2] < aug.blur_p else 0.0,
        "brightness": _log_uniform(rng, aug.brightness),
        "offset": rng.uniform(*aug.offset),
        "photons": _log_uniform(rng, aug.photons) if u[3] < aug.noise_p else 0.0,
        "read_noise": rng.uniform(*aug.read_noise) if u[4] < aug.noise_p else 0.0,
        "quantize": bool(u[5] < aug.quantize_p),
    }


def _apply_intensity(x: np.ndarray, u: np.ndarray, v: np.ndarray, p: dict, rng: np.random.Generator,
                     blur: bool) -> np.ndarray:
    """Raw intensities ``x`` (units of the field's 99.8th percentile) at field positions ``u``, ``v``
    (broadcastable to ``x``) -> the sensor's reading, in [0, 1]."""
    x = np.maximum(x, 0.0) ** p["gamma"]
    if blur and p["blur"] > 0:
        from ..kernels.filters import gaussian_blur  # noqa: PLC0415

        x = gaussian_blur(x.astype(np.float32), p["blur"], num_threads=1)
    if p["vignetting"] > 0:
        cu, cv = p["vignette_uv"]
        x = x * (1.0 - p["vignetting"] * ((u - cu) ** 2 + (v - cv) ** 2))
    if p["background"] > 0:
        angle = p["ramp_angle"]
        ramp = 0.5 + ((u - 0.5) * math.cos(angle) + (v - 0.5) * math.sin(angle)) / math.sqrt(2)
        bu, bv = p["bump_uv"]
        bump = np.exp(-((u - bu) ** 2 + (v - bv) ** 2) / (2 * p["bump_width"] ** 2))
        x = x + p["background"] * (p["ramp_mix"] * ramp + (1 - p["ramp_mix"]) * bump)
    y = p["brightness"] * x + p["offset"]
    noise = np.zeros(np.shape(y))
    if p["photons"] > 0:
        noise += np.sqrt(np.maximum(y, 0.0) / p["photons"]) * rng.standard_normal(np.shape(y))
    if p["read_noise"] > 0:
        noise += p["read_noise"] * rng.standard_normal(np.shape(y))
    y = np.clip(y + noise, 0.0, 1.0)
    if p["quantize"]:
        y = np.round(y * 255.0) / 255.0
    return y.astype(np.float32)


def _resample(image: np.ndarray, size: int) -> np.ndarray:
    """(h, w) -> (size, size), antialiased bilinear (pixel centres aligned, as in :func:`_nearest_index`)."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    if image.shape == (size, size):
        return image.astype(np.float32)
    out = F.interpolate(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None],
                        size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0, 0].numpy()


def _nearest_index(start: int, region: int, size: int, limit: int) -> np.ndarray:
    """Source rows (or columns) of output pixels -1 .. size of a ``region``-pixel span from ``start``
    resampled to ``size`` pixels, by nearest neighbour; clipped to the field (edge pixels repeat)."""
    centres = (np.arange(-1, size + 1) + 0.5) * (region / size)
    return np.clip(start + np.floor(centres).astype(np.int64), 0, limit - 1)


def augmented_crops(rng: np.random.Generator, fields: list[Field], count: int, size: int,
                    aug: Augmentation = Augmentation()) -> tuple[np.ndarray, np.ndarray]:
    """``count`` augmented ``size``² crops: (N, 1, size, size) normalised images and (N, size, size) classes.

    Per crop: a field, a scale ``s`` (native with probability ``aug.native_p``, else log-uniform in
    ``aug.scale``), a region of ``round(size / s)`` pixels (at most the field's side) resized to
    ``size`` (image antialiased bilinear, labels nearest, then :func:`class_targets` with one pixel of
    context around the crop), the imaging conditions (:func:`_draw_intensity`, with probability
    ``aug.intensity_p``), then the normalisation the engine would give the augmented field, a 90°
    rotation and a flip.
    """
    images, targets = [], []
    for _ in range(count):
        field = fields[rng.integers(len(fields))]
        h, w = field.image.shape
        s = 1.0 if rng.random() < aug.native_p else _log_uniform(rng, aug.scale)
        region = min(max(1, int(round(size / s))), h, w)
        y = int(rng.integers(0, h - region + 1))
        x = int(rng.integers(0, w - region + 1))
        rows = _nearest_index(y, region, size, h)
        cols = _nearest_index(x, region, size, w)
        target = class_targets(field.labels[np.ix_(rows, cols)])[1:-1, 1:-1]
        raw = _resample(field.image[y:y + region, x:x + region], size)
        if rng.random() < aug.intensity_p:
            p = _draw_intensity(rng, aug)
            u = ((y + (np.arange(size) + 0.5) * region / size) / h)[:, None]
            v = ((x + (np.arange(size) + 0.5) * region / size) / w)[None, :]
            image = _apply_intensity(raw / field.high, u, v, p, rng, blur=True)
            stats = _apply_intensity(field.stats_values / field.high, field.stats_uv[0], field.stats_uv[1], p,
                                     rng, blur=False)
            scale, offset = percentile_normalization(stats[None, None], PERCENTILES)
            image = (image - offset[0]) * scale[0]
        else:
            image = (raw - field.offset) * field.scale
        k = int(rng.integers(4))
        image = np.rot90(image, k)
        target = np.rot90(target, k)
        if rng.integers(2):
            image, target = image[:, ::-1], target[:, ::-1]
        images.append(np.ascontiguousarray(image, dtype=np.float32)[None])
        targets.append(np.ascontiguousarray(target))
    return np.stack(images), np.stack(targets)
