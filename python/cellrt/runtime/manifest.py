"""Model manifests (``cellrt.json``): what a model folder holds and how to run it.

The engine never guesses: everything it needs to feed a model and read its
outputs comes from the manifest, and a manifest that disagrees with its ONNX
file (hash, input or output names, channel counts) is refused with an error
naming the mismatch.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .._atomic import write_text

FORMAT = "cellrt.model/1"
MANIFEST_NAME = "cellrt.json"
KINDS = ("image2image", "semantic", "instance", "embedding")
OUTPUT_ROLES = ("image", "class_logits", "class_probabilities", "embedding")
NORMALIZATIONS = ("none", "percentile", "fixed")
NORMALIZATION_SCOPES = ("field", "plate")


class ManifestError(ValueError):
    """A manifest that is malformed or does not match its model files."""


def cache_root() -> Path:
    """Where cellrt keeps what it derives from models (engines, extracted archives):
    ``$CELLRT_CACHE`` or ``~/.cache/cellrt``."""
    return Path(os.environ.get("CELLRT_CACHE") or Path.home() / ".cache" / "cellrt")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class OutputSpec:
    name: str
    role: str
    channels: tuple[str, ...] = ()      # class names (class_*) or channel names (image)
    size: int | None = None             # embedding length
    activation: str | None = None       # applied when stitching: None, 'sigmoid', 'softmax'

    def to_json(self) -> dict:
        out = {"name": self.name, "role": self.role}
        if self.channels:
            out["channels"] = list(self.channels)
        if self.size is not None:
            out["size"] = self.size
        if self.activation is not None:
            out["activation"] = self.activation
        return out


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated ``cellrt.json``."""
    name: str
    kind: str
    onnx_file: str
    onnx_sha256: str
    input_name: str
    input_channels: tuple[str, ...]
    tile_size: int
    overlap: int
    outputs: tuple[OutputSpec, ...]
    normalization: dict = field(default_factory=lambda: {"mode": "none"})
    size_multiple: int = 1
    receptive_field: int | None = None
    blend: str = "gaussian"
    object_classes: tuple[str, ...] = ()
    boundary_class: str | None = None
    postprocess: dict = field(default_factory=dict)
    pixel_size_um: float | None = None
    fp16: dict | None = None
    int8: dict | None = None            # quantised ONNX for CPUs (cellrt.export.int8)
    description: str = ""
    training: dict | None = None
    # The object scale the model was trained at: {"object_diameter_px", "diameter_range_px": [lo, hi],
    # "measured_from"}; None where unknown (no rescaling to it).
    scale: dict | None = None
    folder: Path | None = None

    @property
    def normalization_scope(self) -> str:
        """Where percentile normalisation takes its statistics: 'field' or 'plate'. Quantitative
        image2image models default to the plate: a predicted stain's intensity must not move with how much
        of the well a field covers or what it happens to hold."""
        return self.normalization.get("scope") or ("plate" if self.kind == "image2image" else "field")

    # -- lookups ----------------------------------------------------------
    def output(self, role: str) -> OutputSpec | None:
        for spec in self.outputs:
            if spec.role == role:
                return spec
        return None

    @property
    def dense_output(self) -> OutputSpec:
        for spec in self.outputs:
            if spec.role != "embedding":
                return spec
        raise ManifestError(f"{self.name}: no dense output")

    @property
    def onnx_path(self) -> Path:
        if self.folder is None:
            raise ManifestError(f"{self.name}: manifest was not loaded from a folder")
        return self.folder / self.onnx_file

    @property
    def fp16_path(self) -> Path | None:
        if self.fp16 is None or self.folder is None:
            return None
        return self.folder / self.fp16["file"]

    @property
    def int8_path(self) -> Path | None:
        if self.int8 is None or self.folder is None:
            return None
        return self.folder / self.int8["file"]

    # -- (de)serialisation --------------------------------------------------
    def to_json(self) -> dict:
        out = {
            "format": FORMAT,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "onnx": {"file": self.onnx_file, "sha256": self.onnx_sha256},
            "input": {"name": self.input_name, "channels": list(self.input_channels),
                      "size_multiple": self.size_multiple},
            "tile": {"size": self.tile_size, "overlap": self.overlap, "blend": self.blend,
                     "receptive_field": self.receptive_field},
            "normalization": self.normalization,
            "outputs": [o.to_json() for o in self.outputs],
            "pixel_size_um": self.pixel_size_um,
        }
        if self.object_classes:
            out["object_classes"] = list(self.object_classes)
        if self.boundary_class is not None:
            out["boundary_class"] = self.boundary_class
        if self.postprocess:
            out["postprocess"] = self.postprocess
        if self.fp16 is not None:
            out["fp16"] = self.fp16
        if self.int8 is not None:
            out["int8"] = self.int8
        if self.training is not None:
            out["training"] = self.training
        if self.scale is not None:
            out["scale"] = self.scale
        return out

    @classmethod
    def from_json(cls, doc: dict, source: str = "manifest", folder: Path | None = None) -> "Manifest":
        return _parse(doc, source, folder)


def _require(doc: dict, key: str, kind, source: str, where: str = ""):
    if not isinstance(doc, dict) or key not in doc:
        raise ManifestError(f"{source}: missing '{where}{key}'")
    value = doc[key]
    if kind is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ManifestError(f"{source}: '{where}{key}' should be {expected}, got {value!r}")
    return value


def _names(value, source: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ManifestError(f"{source}: '{where}' should be a list of non-empty strings, got {value!r}")
    if len(set(value)) != len(value):
        raise ManifestError(f"{source}: '{where}' has duplicate names: {value}")
    return tuple(value)


def _parse(doc: dict, source: str, folder: Path | None) -> Manifest:
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: should hold a JSON object, got {type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise ManifestError(f"{source}: 'format' should be {FORMAT!r}, got {fmt!r}")
    name = _require(doc, "name", str, source)
    kind = _require(doc, "kind", str, source)
    if kind not in KINDS:
        raise ManifestError(f"{source}: 'kind' should be one of {KINDS}, got {kind!r}")
    onnx = _require(doc, "onnx", dict, source)
    onnx_file = _require(onnx, "file", str, source, "onnx.")
    onnx_sha = _require(onnx, "sha256", str, source, "onnx.")
    if len(onnx_sha) != 64 or any(c not in "0123456789abcdef" for c in onnx_sha):
        raise ManifestError(f"{source}: 'onnx.sha256' should be 64 lowercase hex digits, got {onnx_sha!r}")
    inp = _require(doc, "input", dict, source)
    input_name = _require(inp, "name", str, source, "input.")
    channels = _names(_require(inp, "channels", list, source, "input."), source, "input.channels")
    if not channels:
        raise ManifestError(f"{source}: 'input.channels' should name at least one channel")
    size_multiple = inp.get("size_multiple", 1)
    tile = _require(doc, "tile", dict, source)
    tile_size = _require(tile, "size", int, source, "tile.")
    overlap = _require(tile, "overlap", int, source, "tile.")
    if isinstance(size_multiple, bool) or not isinstance(size_multiple, int) or size_multiple < 1:
        raise ManifestError(f"{source}: 'input.size_multiple' should be a positive int, got {size_multiple!r}")
    if tile_size < 1 or tile_size % size_multiple:
        raise ManifestError(f"{source}: 'tile.size' should be a positive multiple of input.size_multiple "
                            f"({size_multiple}), got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ManifestError(f"{source}: 'tile.overlap' should be in [0, tile.size={tile_size}), got {overlap}")
    blend = tile.get("blend", "gaussian")
    if blend not in ("gaussian", "constant", "linear", "cosine", "crop"):
        raise ManifestError(f"{source}: 'tile.blend' should be gaussian, constant, linear, cosine or crop, "
                            f"got {blend!r}")
    normalization = doc.get("normalization", {"mode": "none"})
    _check_normalization(normalization, len(channels), source)
    outputs = tuple(_parse_output(o, i, source) for i, o in enumerate(_require(doc, "outputs", list, source)))
    if not outputs:
        raise ManifestError(f"{source}: 'outputs' is empty")
    if len({o.name for o in outputs}) != len(outputs):
        raise ManifestError(f"{source}: 'outputs' has duplicate names")
    dense = [o for o in outputs if o.role != "embedding"]
    if kind in ("image2image", "semantic") and len(dense) != 1:
        raise ManifestError(f"{source}: a {kind} model should have exactly one dense output, got "
                            f"{[o.name for o in dense]}")
    if kind == "image2image" and dense[0].role != "image":
        raise ManifestError(f"{source}: an image2image model's dense output should have role 'image', "
                            f"got {dense[0].role!r}")
    object_classes: tuple[str, ...] = ()
    boundary = doc.get("boundary_class")
    if kind == "semantic":
        if dense[0].role not in ("class_logits", "class_probabilities"):
            raise ManifestError(f"{source}: a semantic model's dense output should have role class_logits or "
                                f"class_probabilities, got {dense[0].role!r}")
        classes = dense[0].channels
        if len(classes) < 2:
            raise ManifestError(f"{source}: output '{dense[0].name}' should name >= 2 classes, got {classes}")
        object_classes = _names(doc.get("object_classes", [c for c in classes[1:] if c != boundary]), source,
                                "object_classes")
        unknown = [c for c in object_classes + ((boundary,) if boundary else ()) if c not in classes]
        if unknown:
            raise ManifestError(f"{source}: classes {unknown} are not among output '{dense[0].name}' classes "
                                f"{list(classes)}")
        if classes[0] in object_classes or classes[0] == boundary:
            raise ManifestError(f"{source}: the first class ({classes[0]!r}) is the background; it cannot be an "
                                f"object or boundary class")
    for variant in ("fp16", "int8"):
        section = doc.get(variant)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ManifestError(f"{source}: '{variant}' should be an object with 'file' and 'sha256'")
        _require(section, "file", str, source, f"{variant}.")
        sha = _require(section, "sha256", str, source, f"{variant}.")
        if len(sha) != 64:
            raise ManifestError(f"{source}: '{variant}.sha256' should be 64 hex digits, got {sha!r}")
    fp16 = doc.get("fp16")
    pixel = doc.get("pixel_size_um")
    if pixel is not None and (isinstance(pixel, bool) or not isinstance(pixel, (int, float)) or pixel <= 0):
        raise ManifestError(f"{source}: 'pixel_size_um' should be a positive number or null, got {pixel!r}")
    receptive = tile.get("receptive_field")
    scale = _check_scale(doc.get("scale"), source)
    return Manifest(name=name, kind=kind, onnx_file=onnx_file, onnx_sha256=onnx_sha, input_name=input_name,
                    input_channels=channels, tile_size=tile_size, overlap=overlap, outputs=outputs,
                    normalization=normalization, size_multiple=size_multiple, receptive_field=receptive,
                    blend=blend, object_classes=object_classes, boundary_class=boundary,
                    postprocess=doc.get("postprocess", {}), pixel_size_um=pixel, fp16=fp16, int8=doc.get("int8"),
                    description=doc.get("description", ""), training=doc.get("training"), scale=scale,
                    folder=folder)


def _positive_number(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and value > 0)


def _check_scale(section, source: str) -> dict | None:
    """The manifest's ``scale`` section: the typical object diameter in the model's own pixels and the
    range of diameters it handles without rescaling."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ManifestError(f"{source}: 'scale' should be an object with 'object_diameter_px' and "
                            f"'diameter_range_px', got {section!r}")
    diameter = section.get("object_diameter_px")
    if not _positive_number(diameter):
        raise ManifestError(f"{source}: 'scale.object_diameter_px' should be a positive number (pixels), got "
                            f"{diameter!r}")
    span = section.get("diameter_range_px")
    if (not isinstance(span, list) or len(span) != 2 or not all(_positive_number(v) for v in span)
            or not span[0] <= diameter <= span[1]):
        raise ManifestError(f"{source}: 'scale.diameter_range_px' should be [low, high] pixels around "
                            f"object_diameter_px ({diameter!r}), got {span!r}")
    return section


def _check_normalization(norm, channels: int, source: str) -> None:
    mode = norm.get("mode") if isinstance(norm, dict) else None
    if mode not in NORMALIZATIONS:
        raise ManifestError(f"{source}: 'normalization.mode' should be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "percentile":
        pct = norm.get("percentiles")
        if (not isinstance(pct, list) or len(pct) != 2 or not all(isinstance(p, (int, float)) for p in pct)
                or not 0 <= pct[0] < pct[1] <= 100):
            raise ManifestError(f"{source}: 'normalization.percentiles' should be [low, high] with "
                                f"0 <= low < high <= 100, got {pct!r}")
    scope = norm.get("scope") if isinstance(norm, dict) else None
    if scope is not None and scope not in NORMALIZATION_SCOPES:
        raise ManifestError(f"{source}: 'normalization.scope' should be one of {NORMALIZATION_SCOPES} (the "
                            f"percentiles of each field, or of a sample of the plate's fields), got {scope!r}")
    if mode == "fixed":
        for key in ("scale", "offset"):
            value = norm.get(key)
            if not isinstance(value, list) or len(value) != channels:
                raise ManifestError(f"{source}: 'normalization.{key}' should list one number per input channel "
                                    f"({channels}), got {value!r}")


def _parse_output(doc, index: int, source: str) -> OutputSpec:
    where = f"outputs[{index}]."
    name = _require(doc, "name", str, source, where)
    role = _require(doc, "role", str, source, where)
    if role not in OUTPUT_ROLES:
        raise ManifestError(f"{source}: '{where}role' should be one of {OUTPUT_ROLES}, got {role!r}")
    channels = _names(doc.get("channels", []), source, where + "channels")
    size = doc.get("size")
    activation = doc.get("activation")
    if activation not in (None, "sigmoid", "softmax"):
        raise ManifestError(f"{source}: '{where}activation' should be null, 'sigmoid' or 'softmax', "
                            f"got {activation!r}")
    if role == "embedding":
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ManifestError(f"{source}: '{where}size' should be the embedding length (a positive int), "
                                f"got {size!r}")
    elif not channels:
        raise ManifestError(f"{source}: '{where}channels' should name the output's channels or classes")
    if role == "class_logits" and activation != "softmax" and len(channels) > 1:
        raise ManifestError(f"{source}: '{where}activation' should be 'softmax' for class logits, "
                            f"got {activation!r}")
    return OutputSpec(name=name, role=role, channels=channels, size=size, activation=activation)


def load_manifest(folder: Path, *, verify_hash: bool = True) -> Manifest:
    """Read and validate ``folder/cellrt.json``; with ``verify_hash`` the ONNX
    file's SHA-256 must match the manifest's."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{folder}: not a cellrt model folder (no {MANIFEST_NAME})")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: unreadable manifest: {error}") from error
    manifest = _parse(doc, str(path), folder)
    if verify_hash:
        verify_files(manifest)
    return manifest


def verify_files(manifest: Manifest) -> None:
    variants = [(name, section) for name, section in (("fp16", manifest.fp16), ("int8", manifest.int8)) if section]
    for label, file, sha in [("onnx", manifest.onnx_file, manifest.onnx_sha256)] + [
            (name, section["file"], section["sha256"]) for name, section in variants]:
        path = manifest.folder / file
        if not path.is_file():
            raise ManifestError(f"{manifest.folder / MANIFEST_NAME}: '{label}.file' names {path}, which does "
                                f"not exist")
        actual = sha256_file(path)
        if actual != sha:
            raise ManifestError(f"{path}: SHA-256 is {actual}, but the manifest's '{label}.sha256' says {sha}; "
                                f"the file was changed after export (re-export or fix the manifest)")


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``folder/cellrt.json`` atomically (temporary file, then rename)."""
    path = Path(folder) / MANIFEST_NAME
    write_text(path, json.dumps(manifest.to_json(), indent=2) + "\n")
    return path
