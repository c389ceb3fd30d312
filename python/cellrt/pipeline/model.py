"""``cellrt.load_model`` and one field through a model."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..kernels.labeling import measure
from ..kernels.resize import rescaled_shape, resize
from ..kernels.stitch import percentile_normalization, stitch, tile
from ..runtime.manifest import Manifest, ManifestError, load_manifest
from .postprocess import POSTPROCESSORS
from .scale import ScaleError, check_length, estimate_object_diameter, model_scale, rescale_factor, \
    scale_postprocess_params

BACKENDS = ("auto", "ort", "tensorrt")


def _bundled_root() -> Path:
    return Path(str(resources.files("cellrt") / "data" / "models"))


def available_models() -> list[str]:
    """Names of the models bundled with this installation."""
    root = _bundled_root()
    return sorted(p.name for p in root.iterdir() if (p / "cellrt.json").is_file()) if root.is_dir() else []


@dataclass
class FieldResult:
    """One field through a model."""
    labels: np.ndarray                  # (H, W) int32, 0 background, 1..count
    count: int
    objects: dict                       # columnar table, CellProfiler-style names
    prediction: np.ndarray              # stitched dense output (C, H, W): predicted channels or class probabilities
    embedding: np.ndarray | None        # (F,) mean of the tile embeddings
    tile_embeddings: np.ndarray | None  # (N, F)
    class_names: tuple = ()
    timings: dict = field(default_factory=dict)  # seconds per stage
    scale: dict = field(default_factory=dict)    # the object scale the field was run at (Model.run)

    @property
    def probabilities(self) -> np.ndarray:
        return self.prediction


@dataclass
class PreparedField:
    """A field checked, normalised and tiled, waiting for the model."""
    image: np.ndarray            # (C, H, W) as given (raw intensities, for measuring)
    tiles: np.ndarray            # (N, C, th, tw) float32 (cupy on the GPU path)
    origins: np.ndarray          # (N, 2)
    extra_channels: dict         # name -> (H, W), measured only
    timings: dict                # seconds per stage so far
    factor: float = 1.0          # model pixels per field pixel (the field was resampled by it before tiling)
    model_shape: tuple | None = None  # (H, W) of the grid the tiles cover: the field's, or the resampled one


PRECISIONS = ("auto", "fp32", "fp16", "int8")


def _select_backend(manifest: Manifest, backend: str, threads: int, precision: str, engine_options: dict,
                    batch_size: int = 8):
    """(backend, the precision it runs, SHA-256 of the ONNX file it runs)."""
    if backend not in BACKENDS:
        raise ValueError(f"load_model: backend should be one of {BACKENDS}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"load_model: precision should be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8" and backend == "tensorrt":
        raise ValueError("load_model: precision 'int8' is the quantised ONNX for CPUs (ONNX Runtime); TensorRT "
                         "runs 'fp16' or 'fp32'")
    profile = engine_options.get("profile")
    if profile is not None and getattr(profile, "min_batch", 1) != 1:
        # The plate's batches fill across fields, but the last one holds whatever tiles remain - one, maybe.
        raise ValueError(f"load_model: engine_options' profile should take batches from 1 tile (min_batch 1), got "
                         f"min_batch {profile.min_batch}: the last batch of a plate would be refused")
    if backend in ("auto", "tensorrt") and precision != "int8":
        from ..runtime import tensorrt as trt_runtime  # noqa: PLC0415

        # Why TensorRT cannot run here, kept for the refusal of an explicit backend='tensorrt'.
        missing = None
        if trt_runtime.current_compute_capability() is None:
            import importlib.util  # noqa: PLC0415

            missing = ("cupy is not installed" if importlib.util.find_spec("cupy") is None
                       else "cupy finds no usable CUDA GPU (no device, or no driver)")
        else:
            # No TensorRT module, or only TensorRT-RTX on a GPU it does not run on (an H100/H200): 'auto' runs
            # ONNX Runtime there instead of failing to build.
            missing = trt_runtime.unusable_here(engine_options.get("flavour", "auto"))
        if missing is None:
            chosen = "fp16" if precision == "auto" else precision
            options = dict(engine_options)
            if options.get("profile") is None:
                # Batches of batch_size tiles must fit the engine's profile (1/8/16 at the default batch_size of 8).
                options["profile"] = trt_runtime.Profile(1, batch_size, max(16, batch_size), manifest.tile_size)
            artifact = trt_runtime.build_engine(manifest, precision=chosen, **options)
            sha = manifest.fp16["sha256"] if chosen == "fp16" else manifest.onnx_sha256
            return trt_runtime.TensorRTBackend(manifest, artifact), chosen, sha
        if backend == "tensorrt":
            raise ValueError(f"load_model: backend 'tensorrt' needs a CUDA GPU, cupy and tensorrt or tensorrt_rtx; "
                             f"model {manifest.name!r} cannot run on it here: {missing} (run `cellrt doctor`)")
    from ..runtime.ort import OrtBackend  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    # ONNX Runtime on a CPU computes in FP32 unless asked for a stored variant.
    chosen = "fp32" if precision == "auto" else precision
    section = {"fp16": manifest.fp16, "int8": manifest.int8}.get(chosen)
    if chosen != "fp32" and section is None:
        hint = "make one with `cellrt quantize`" if chosen == "int8" else "re-export the model"
        raise ValueError(f"load_model: model {manifest.name!r} ({manifest.folder}) has no {chosen} ONNX in its "
                         f"manifest; {hint}")
    path = manifest.onnx_path if chosen == "fp32" else manifest.folder / section["file"]
    sha = manifest.onnx_sha256 if chosen == "fp32" else section["sha256"]
    providers = ["cuda", "cpu"] if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else ["cpu"]
    backend = OrtBackend(path, manifest, providers=providers, threads=threads)
    if chosen == "int8":
        from ..runtime.ort import int8_file_exact, int8_runs_on_cpu  # noqa: PLC0415

        # The session's providers, not those asked for: ONNX Runtime falls back to the CPU when CUDA fails.
        if int8_runs_on_cpu(backend.providers):
            exact, cpu = int8_file_exact(section.get("weight_bits", 8))
            if not exact:
                fallback = (" (ONNX Runtime could not use CUDA and runs this session on the CPU)"
                            if "cuda" in providers else "")
                raise ValueError(f"load_model: precision 'int8' of model {manifest.name!r} needs a CPU with VNNI "
                                 f"(avx512_vnni or avx_vnni); this one is {cpu}{fallback}, where ONNX Runtime's "
                                 f"8-bit convolutions saturate 16-bit sums - results its INT8 check never saw. "
                                 f"Run precision 'fp32', or make an INT8 file with 7-bit weights, exact on every "
                                 f"CPU: `cellrt quantize {manifest.name} FIELD.tif ... --weight-bits 7 --out DIR`")
    return backend, chosen, sha


AUTO_TILE_MANIFEST_TILES = 8   # largest 'auto' tile, in manifest tiles' pixels


def _check_tile_size(tile_size, manifest: Manifest):
    if tile_size in ("auto", "model"):
        return tile_size
    if isinstance(tile_size, int) and not isinstance(tile_size, bool):
        tile_size = (tile_size, tile_size)
    if (isinstance(tile_size, (tuple, list)) and len(tile_size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in tile_size)):
        th, tw = tile_size
        if min(th, tw) > 2 * manifest.overlap and th % manifest.size_multiple == 0 and tw % manifest.size_multiple == 0:
            return th, tw
        raise ValueError(f"load_model: tile_size {tile_size} should be multiples of {manifest.size_multiple} larger "
                         f"than twice the overlap ({manifest.overlap} px) for model {manifest.name!r}")
    raise ValueError(f"load_model: tile_size should be 'auto', 'model', an int or (height, width), got {tile_size!r}")


def _covering_side(side: int, overlap: int, multiple: int, max_side: int) -> int:
    """The smallest tile side (a multiple of ``multiple``) that covers ``side`` pixels with the fewest
    tiles no longer than ``max_side`` overlapping by ``overlap``."""
    def round_up(value: int) -> int:
        return -(-value // multiple) * multiple

    smallest = round_up(2 * overlap + 1)   # tile() needs the overlap below the tile; smaller fields are padded
    if round_up(side) <= max_side:
        return max(smallest, round_up(side))
    count = -(-(side - overlap) // (max_side - overlap))
    return max(smallest, round_up(-(-(side - overlap) // count) + overlap))


class Model:
    """A loaded model: manifest + backend. ``run(image)`` takes one field."""

    def __init__(self, manifest: Manifest, backend: str = "auto", *, threads: int = 0, batch_size: int = 8,
                 precision: str = "auto", engine_options: dict | None = None, tile_size="auto"):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"load_model: batch_size should be a positive int, got {batch_size!r}")
        self.tile_size = _check_tile_size(tile_size, manifest)
        if manifest.kind not in POSTPROCESSORS:
            raise ValueError(f"{manifest.folder}: no post-processing for kind {manifest.kind!r} "
                             f"(have {sorted(POSTPROCESSORS)})")
        self.manifest = manifest
        self.batch_size = batch_size
        self.backend, self.precision, self.weights_sha256 = _select_backend(manifest, backend, threads, precision,
                                                                            engine_options or {}, batch_size)
        fixed = self._fixed_tile()
        if isinstance(self.tile_size, tuple) and not self.backend.any_tile_size and self.tile_size != (fixed, fixed):
            raise ValueError(f"load_model: backend {self.backend.name!r} runs {fixed}-pixel tiles (its "
                             f"engine profile or graph); tile_size={self.tile_size} needs a backend that takes any "
                             f"tile size (ONNX Runtime)")
        self._buffers: dict = {}
        self._cupy = None
        if self.backend.name == "tensorrt":
            import cupy  # noqa: PLC0415 - the TensorRT backend already needs it

            self._cupy = cupy

    @property
    def name(self) -> str:
        return self.manifest.name

    def _fixed_tile(self) -> int:
        """The tile side of a backend that runs one tile size: its engine profile's (TensorRT), else the manifest's."""
        return getattr(self.backend, "tile_size", None) or self.manifest.tile_size

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Model({m.name!r}, kind={m.kind!r}, channels={list(m.input_channels)}, tile={self.tile_size!r} "
                f"(manifest {m.tile_size}), "
                f"overlap={m.overlap}, backend={self.backend.name!r}, precision={self.precision!r})")

    def _as_field(self, image) -> np.ndarray:
        image = np.asarray(image)
        channels = len(self.manifest.input_channels)
        if image.ndim == 2:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != channels:
            raise ValueError(f"{self.name}: image should be (H, W) or (C, H, W) with C = {channels} channels "
                             f"{list(self.manifest.input_channels)}, got shape {image.shape}")
        if image.dtype.kind not in "uif" or image.dtype == np.float16:
            image = image.astype(np.float32)
        if image.shape[1] < 1 or image.shape[2] < 1:
            raise ValueError(f"{self.name}: image is empty, shape {image.shape}")
        if image.dtype.kind == "f":
            for name, plane in zip(self.manifest.input_channels, image):
                bad = plane.size - int(np.count_nonzero(np.isfinite(plane)))
                if bad:
                    raise ValueError(f"{self.name}: input channel {name!r} holds {bad} NaN or infinite pixel(s); "
                                     f"the model takes finite values")
        return image

    def tile_shape(self, field_hw) -> tuple[int, int]:
        """Tile (height, width) for a field of this size.

        ``tile_size='auto'`` on a backend that takes any tile size (ONNX
        Runtime): per axis, the fewest tiles that cover the field - no
        larger than ``AUTO_TILE_MANIFEST_TILES`` manifest tiles' pixels
        (memory per call stays that of a batch of 8), overlapping by the
        manifest's overlap, a multiple of its size multiple - each as small
        as that count allows. The plan depends on the field's size only,
        not on ``batch_size``, so results do not either. A 1024² field
        is then 4 tiles of 536² (1.15 Mpx through the model) instead of 25
        of 256² (1.64 Mpx): the same network, less recomputed overlap. The
        TensorRT backend runs its engine profile's tile (the manifest's,
        unless ``engine_options`` names a profile of another).
        """
        m = self.manifest
        if not self.backend.any_tile_size:   # 'auto', 'model' or the same size (checked at load)
            return self._fixed_tile(), self._fixed_tile()
        if self.tile_size == "model":
            return m.tile_size, m.tile_size
        if self.tile_size != "auto":
            return self.tile_size
        multiple = m.size_multiple
        budget = AUTO_TILE_MANIFEST_TILES * m.tile_size * m.tile_size
        max_side = max(m.tile_size, int(budget ** 0.5) // multiple * multiple)
        return tuple(_covering_side(int(side), m.overlap, multiple, max_side) for side in field_hw)

    def tiles_per_batch(self, tile_hw, batch_size: int | None = None) -> int:
        """Tiles of this shape in one inference call: ``batch_size`` manifest tiles' worth of pixels, at least 1,
        and no more than the backend takes (a TensorRT engine's profile ``max_batch``)."""
        m = self.manifest
        budget = (batch_size or self.batch_size) * m.tile_size * m.tile_size
        tiles = max(1, budget // (int(tile_hw[0]) * int(tile_hw[1])))
        limit = getattr(self.backend, "max_batch", None)
        return min(tiles, limit) if limit else tiles

    def normalization(self, fields) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(scale, offset)`` the model's inputs are normalised by, from one field
        ``(C, H, W)`` or from the pooled pixels of several (a sample of a plate's fields: the plate
        scope of :attr:`Manifest.normalization_scope`). Fixed and no normalisation ignore the pixels."""
        norm = self.manifest.normalization
        mode = norm.get("mode", "none")
        fields = [self._as_field(f) for f in (fields if isinstance(fields, (list, tuple)) else [fields])]
        if not fields:
            raise ValueError(f"{self.name}: normalization needs at least one field")
        channels = fields[0].shape[0]
        if mode == "percentile":
            pooled = fields[0] if len(fields) == 1 else np.concatenate(
                [f.reshape(channels, 1, -1) for f in fields], axis=2)
            return percentile_normalization(pooled, tuple(norm["percentiles"]))
        if mode == "fixed":
            return np.asarray(norm["scale"], np.float32), np.asarray(norm["offset"], np.float32)
        return np.ones(channels, np.float32), np.zeros(channels, np.float32)

    def _check_normalization(self, normalization, channels: int):
        if normalization is None:
            return None
        try:
            scale, offset = (np.asarray(v, np.float32).reshape(-1) for v in normalization)
        except (TypeError, ValueError):
            scale = offset = None
        if scale is None or len(scale) != channels or len(offset) != channels \
                or not (np.isfinite(scale).all() and np.isfinite(offset).all()):
            raise ValueError(f"{self.name}: normalization should be (scale, offset) with {channels} finite values "
                             f"each (Model.normalization), got {normalization!r}")
        return scale, offset

    def _tile(self, image: np.ndarray, factor: float = 1.0, normalization=None):
        """Normalise and tile; on the GPU path the field is uploaded once and
        tiled on the device (scale and offset come from the host copy). With
        ``factor`` != 1 the field is resampled onto the model's scale first
        (normalised by the statistics of the field as imaged). Tiles are never
        normalised on their own statistics: the field's, or those given."""
        scale, offset = normalization if normalization is not None else self.normalization(image)
        source = self._cupy.asarray(image) if self._cupy is not None else image
        if factor != 1.0:
            source = resize(source, rescaled_shape(image.shape, factor))
        return tile(source, self.tile_shape(source.shape[1:]), self.manifest.overlap, dtype=np.float32,
                    normalize="fixed", scale=scale, offset=offset)

    def infer_tiles(self, tiles) -> dict:
        """All tiles through the backend in batches of ``batch_size``.

        Host tiles give host outputs (ONNX Runtime binds each batch straight
        into slices of the field's output buffers); device tiles give device
        outputs (TensorRT writes on the GPU and the outputs stay there).
        """
        xp = self._cupy if self._cupy is not None else np
        n = len(tiles)
        shapes = {spec.name: ((n, spec.size) if spec.role == "embedding"
                              else (n, len(spec.channels)) + tuple(tiles.shape[2:])) for spec in self.manifest.outputs}
        key = tuple(tiles.shape)
        outputs = self._buffers.get(key)
        if outputs is None:  # reused for the next field of the same size: no page faults per field
            outputs = {name: xp.empty(shape, xp.float32) for name, shape in shapes.items()}
            self._buffers = {key: outputs}
        step = self.tiles_per_batch(tiles.shape[2:])
        for start in range(0, n, step):
            stop = min(n, start + step)
            batch = tiles[start:stop]
            if self._cupy is None:  # ONNX Runtime: bind straight into the field buffers
                self.backend.infer(batch, out={name: array[start:stop] for name, array in outputs.items()})
            else:
                for name, array in self.backend.infer(batch).items():
                    outputs[name][start:stop] = array
        return outputs

    def scale_factor(self, image, object_diameter="auto") -> tuple[float, dict]:
        """Model pixels per field pixel for one field, and how it was found (for run records).

        ``object_diameter``: the field's typical object diameter in its
        pixels; ``"auto"`` estimates it from the field
        (:func:`cellrt.pipeline.scale.estimate_object_diameter` on the first
        input channel); ``None`` runs the field as it is. A model whose
        manifest records no object scale runs every field as it is.
        """
        scale = model_scale(self.manifest)
        if object_diameter is None or scale is None:
            if scale is None and object_diameter not in (None, "auto"):
                raise ScaleError(f"{self.name}: the model's manifest records no object scale ('scale'), so an "
                                 f"object diameter cannot rescale fields for it")
            return 1.0, {"factor": 1.0, "source": "none" if object_diameter is None else "model has no scale"}
        if isinstance(object_diameter, str):
            if object_diameter != "auto":
                raise ValueError(f"{self.name}: object_diameter should be 'auto', None or a number of pixels, "
                                 f"got {object_diameter!r}")
            estimate = estimate_object_diameter(self._as_field(image)[0])
            if estimate.diameter_px is None:
                return 1.0, {"factor": 1.0, "source": "estimate failed", **estimate.to_json()}
            diameter, record = estimate.diameter_px, {"source": "estimated", **estimate.to_json()}
        else:
            diameter = check_length(object_diameter, "object_diameter", self.name)
            record = {"source": "given", "diameter_px": diameter}
        factor = rescale_factor(diameter, scale, f"{self.name}: object_diameter")
        return factor, {"factor": round(factor, 4), **record}

    def prepare(self, image, *, extra_channels=None, factor: float = 1.0, normalization=None) -> PreparedField:
        """Check, normalise and tile one field (the pipeline's reader stage).

        ``extra_channels``: ``{name: (H, W) array}`` measured on the objects
        without being model inputs (e.g. a GFP channel beside the DNA stain).
        ``factor``: model pixels per field pixel (:meth:`scale_factor`); the
        field is resampled by it before tiling, and :meth:`finish` brings the
        model's output back onto the field's grid. ``normalization``:
        ``(scale, offset)`` per input channel (:meth:`normalization` of a
        plate's sample) instead of the field's own percentiles.
        """
        started = time.perf_counter()
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.01 <= factor <= 100:
            raise ValueError(f"{self.name}: factor should be a number in [0.01, 100], got {factor!r}")
        factor = float(factor)
        image = self._as_field(image)
        extras = {}
        for name, plane in (extra_channels or {}).items():
            plane = np.asarray(plane)
            if plane.shape != image.shape[1:]:
                raise ValueError(f"{self.name}: extra channel {name!r} has shape {plane.shape}, the field is "
                                 f"{image.shape[1:]}")
            extras[name] = plane
        batch = self._tile(image, factor, self._check_normalization(normalization, image.shape[0]))
        model_shape = rescaled_shape(image.shape, factor) if factor != 1.0 else tuple(image.shape[1:])
        return PreparedField(image, batch.tiles, batch.origins, extras, {"tile": time.perf_counter() - started},
                             factor=factor, model_shape=model_shape)

    def output_buffers(self, tile_count: int, tile_hw) -> dict:
        """Fresh arrays for one field's model outputs (device arrays on the GPU path)."""
        xp = self._cupy if self._cupy is not None else np  # device outputs stay on the device
        return {spec.name: xp.empty((tile_count, spec.size) if spec.role == "embedding"
                                    else (tile_count, len(spec.channels)) + tuple(tile_hw), xp.float32)
                for spec in self.manifest.outputs}

    def finish(self, prepared: PreparedField, outputs: dict, *, channel_names=None) -> FieldResult:
        """Stitch, post-process and measure one field whose tiles went through
        the model (the pipeline's worker stage)."""
        timings = dict(prepared.timings)
        image = prepared.image
        clock = time.perf_counter()
        spec = self.manifest.dense_output
        model_shape = prepared.model_shape or tuple(image.shape[1:])
        dense = stitch(outputs[spec.name], prepared.origins, model_shape, overlap=self.manifest.overlap,
                       blend=self.manifest.blend, activation=spec.activation)
        if tuple(model_shape) != tuple(image.shape[1:]):
            # Back onto the field's grid: labels and measurements are in the field's own pixels.
            dense = resize(dense, tuple(image.shape[1:]))
        # On the GPU path the stitched output stays on the device through post-processing (semantic
        # models: threshold, fill holes, label, grow, class means all run there); labels, the
        # prediction and the table come to the host once, at the end.
        on_device = self._cupy is not None and hasattr(dense, "get")
        now = time.perf_counter()
        timings["stitch"], clock = now - clock, now
        params = scale_postprocess_params(self.manifest.postprocess.get("params", {}), prepared.factor)
        labels, count, extra = POSTPROCESSORS[self.manifest.kind](self.manifest, image, dense, params)
        if on_device:
            labels = labels.get() if hasattr(labels, "get") else labels
            dense = dense.get()
            extra = {k: v.get() if hasattr(v, "get") else v for k, v in extra.items()}
        now = time.perf_counter()
        timings["postprocess"], clock = now - clock, now
        names = list(channel_names) if channel_names is not None else list(self.manifest.input_channels)
        if len(names) != image.shape[0]:
            raise ValueError(f"{self.name}: channel_names should name {image.shape[0]} channels, got {names}")
        channels, channel_labels = [image], names
        if prepared.extra_channels:
            channels.append(np.stack(list(prepared.extra_channels.values())))
            channel_labels = channel_labels + list(prepared.extra_channels)
        if self.manifest.kind == "image2image":
            channels.append(dense)
            channel_labels = channel_labels + [f"{c}_predicted" for c in spec.channels]
        stack = np.concatenate([c.astype(np.float32, copy=False) for c in channels]) if len(channels) > 1 else image
        objects = measure(labels, stack, channel_names=channel_labels, num_objects=count)
        objects.update(extra)
        now = time.perf_counter()
        timings["measure"] = now - clock
        embedding_spec = self.manifest.output("embedding")
        tile_embeddings = None
        if embedding_spec is not None:
            tile_embeddings = outputs[embedding_spec.name]
            tile_embeddings = tile_embeddings.get() if hasattr(tile_embeddings, "get") else tile_embeddings.copy()
        class_names = self.manifest.object_classes if self.manifest.kind == "semantic" else ()
        return FieldResult(labels=labels, count=count, objects=objects, prediction=dense,
                           embedding=None if tile_embeddings is None else tile_embeddings.mean(axis=0),
                           tile_embeddings=tile_embeddings, class_names=class_names, timings=timings)

    def run(self, image, *, channel_names=None, extra_channels=None, object_diameter="auto",
            normalization=None) -> FieldResult:
        """One field: ``(H, W)`` or ``(C, H, W)``, any integer or float dtype.

        Objects are measured on the input channels (raw intensities, named as
        in the manifest unless ``channel_names`` is given), on
        ``extra_channels`` (``{name: (H, W) array}``) and, for image2image
        models, on the predicted channels too.

        ``object_diameter``: the typical object diameter in this field's
        pixels, ``"auto"`` (estimated from the field) or ``None`` (run the
        field as it is). Where it lies outside the model's range the field is
        resampled to the model's scale (see :meth:`scale_factor`); labels and
        measurements are on the field's grid either way, and
        ``result.timings`` / ``result.scale`` say what was done.
        ``normalization``: ``(scale, offset)`` from :meth:`normalization` of
        other fields (e.g. the plate's), instead of this field's percentiles.
        """
        factor, record = self.scale_factor(image, object_diameter)
        prepared = self.prepare(image, extra_channels=extra_channels, factor=factor, normalization=normalization)
        started = time.perf_counter()
        outputs = self.infer_tiles(prepared.tiles)
        prepared.timings["infer"] = time.perf_counter() - started
        result = self.finish(prepared, outputs, channel_names=channel_names)
        result.scale = record
        return result


def model_folder(name_or_path) -> Path:
    """The folder of a model given as a folder, a bundled model's name, or an archive (extracted once
    into the model cache); errors say which of these it is not."""
    path = Path(name_or_path)
    from ..runtime.archive import is_model_archive, unpack_model  # noqa: PLC0415

    if is_model_archive(path):
        return unpack_model(path)
    if (path / "cellrt.json").is_file():
        return path
    bundled = _bundled_root() / str(name_or_path)
    if (bundled / "cellrt.json").is_file():
        return bundled
    if path.exists():
        raise ManifestError(f"{path}: not a cellrt model folder (no cellrt.json)")
    raise ValueError(f"load_model: {name_or_path!r} is neither a bundled model ({available_models()}) nor "
                     f"a model folder")


def load_model(name_or_path, backend: str = "auto", **options) -> Model:
    """A bundled model by name (``"nuclei"``, ``"isl-dapi"``), a model folder, or a model archive
    (``.zip`` made by :func:`cellrt.runtime.archive.pack_model` / ``cellrt pack``).

    ``backend``: 'auto' (TensorRT on a GPU with TensorRT installed, else ONNX
    Runtime), 'ort' or 'tensorrt'. Options: ``threads`` (ONNX Runtime
    intra-op threads), ``batch_size`` (in manifest-sized tiles: the pixels
    of one inference call), ``tile_size`` ('auto': sized to the field, see
    :meth:`Model.tile_shape`; 'model': the manifest's; or an int or (h, w)),
    ``precision`` ('auto': FP16 on TensorRT, FP32 on ONNX Runtime; 'fp32';
    'fp16'; 'int8': the quantised ONNX on ONNX Runtime, see
    :func:`cellrt.export.int8.quantize_int8`), ``engine_options`` (passed to
    :func:`cellrt.runtime.build_engine`).
    """
    return Model(load_manifest(model_folder(name_or_path)), backend, **options)
