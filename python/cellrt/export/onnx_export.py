"""torch module -> ONNX (dynamic batch, height and width) -> verified -> manifest."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..runtime.manifest import Manifest, OutputSpec, sha256_file, write_manifest
from .fp16 import convert_to_fp16, fp16_error
from .graph_passes import optimize_file


@dataclass
class ExportReport:
    folder: Path
    manifest: Manifest
    max_abs_error: dict[str, float]    # ONNX Runtime vs torch, per output
    fp16_error: dict[str, float] | None


def _export_graph(module, path: Path, example, input_name: str, output_names: list[str], size_multiple: int,
                  opset: int) -> None:
    import torch  # noqa: PLC0415
    from torch.export import Dim  # noqa: PLC0415

    batch = Dim("batch", min=1, max=4096)
    if size_multiple > 1:
        height = size_multiple * Dim("height_blocks", min=1, max=65536 // size_multiple)
        width = size_multiple * Dim("width_blocks", min=1, max=65536 // size_multiple)
    else:
        height, width = Dim("height", min=1, max=65536), Dim("width", min=1, max=65536)
    arg = next(iter(__import__("inspect").signature(module.forward).parameters))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # torch's exporter warns about its own internals (pytree, torchvision ops); nothing to act on.
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset,
                                    input_names=[input_name], output_names=output_names,
                                    dynamic_shapes={arg: {0: batch, 2: height, 3: width}}, verbose=False)
        program.save(str(tmp))
        optimize_file(tmp)


def to_onnx(module, folder, *, name: str, kind: str, input_channels, outputs: list[OutputSpec], tile_size: int,
            overlap: int, normalization: dict | None = None, size_multiple: int = 1, input_name: str = "image",
            receptive_field: int | None = None, blend: str = "gaussian", object_classes=(), boundary_class=None,
            postprocess: dict | None = None, pixel_size_um: float | None = None, description: str = "",
            training: dict | None = None, verify_tiles=None, tolerance: float = 1e-3, fp16: bool = True,
            fp16_tolerance: float = 0.02, opset: int = 18, seed: int = 0) -> ExportReport:
    """Export ``module`` (``forward(x) -> tuple of tensors`` in the order of
    ``outputs``) into ``folder`` as ``model.onnx`` (+ ``model.fp16.onnx``) and
    ``cellrt.json``.

    The export is verified before the manifest is written: ONNX Runtime's
    outputs on random tiles and on ``verify_tiles`` (real data, ``[N, C, H,
    W]`` float32, already normalised) must match torch's within
    ``tolerance`` (max abs error relative to each output's range); the
    mixed-precision model must match the FP32 one within ``fp16_tolerance``
    on ``verify_tiles``. Either failure raises ValueError and leaves no
    manifest, so a half-exported folder is never loadable.
    """
    import torch  # noqa: PLC0415

    from ..runtime.ort import OrtBackend  # noqa: PLC0415

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    channels = len(input_channels)
    module = module.eval()
    example = torch.zeros(2, channels, tile_size, tile_size)
    onnx_path = folder / "model.onnx"
    _export_graph(module, onnx_path, example, input_name, [o.name for o in outputs], size_multiple, opset)

    manifest = Manifest(name=name, kind=kind, onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path),
                        input_name=input_name, input_channels=tuple(input_channels), tile_size=tile_size,
                        overlap=overlap, outputs=tuple(outputs), normalization=normalization or {"mode": "none"},
                        size_multiple=size_multiple, receptive_field=receptive_field, blend=blend,
                        object_classes=tuple(object_classes), boundary_class=boundary_class,
                        postprocess=postprocess or {}, pixel_size_um=pixel_size_um, description=description,
                        training=training, folder=folder)
    manifest = Manifest.from_json(manifest.to_json(), str(folder), folder)  # the same checks as loading

    rng = np.random.default_rng(seed)
    # Random tiles at two sizes check the dynamic axes; real tiles check the values that matter.
    checks = [rng.standard_normal((3, channels, tile_size, tile_size), dtype=np.float32),
              rng.standard_normal((1, channels, 2 * size_multiple * max(1, 32 // size_multiple),
                                   3 * size_multiple * max(1, 32 // size_multiple)), dtype=np.float32)]
    if verify_tiles is not None:
        verify_tiles = np.ascontiguousarray(verify_tiles, dtype=np.float32)
        checks.append(verify_tiles)
    backend = OrtBackend(onnx_path, manifest)
    errors = {o.name: 0.0 for o in outputs}
    for tiles in checks:
        got = backend.infer(tiles)
        with torch.no_grad():
            expected = module(torch.from_numpy(tiles))
        for spec, ref in zip(outputs, expected):
            ref = ref.numpy()
            scale = float(np.max(np.abs(ref))) or 1.0
            errors[spec.name] = max(errors[spec.name], float(np.max(np.abs(got[spec.name] - ref))) / scale)
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    if bad:
        raise ValueError(f"{onnx_path}: ONNX Runtime differs from torch by {bad} (relative max abs error), above "
                         f"tolerance {tolerance}; manifest not written")

    half_errors = None
    if fp16:
        fp16_path = folder / "model.fp16.onnx"
        convert_to_fp16(onnx_path, fp16_path)
        OrtBackend(fp16_path, manifest)  # same inputs/outputs (names, FP32 types) as the FP32 graph
        calibration = verify_tiles if verify_tiles is not None else checks[0]
        half_errors = fp16_error(onnx_path, fp16_path, calibration, input_name)
        worst = max(half_errors.values())
        if not worst <= fp16_tolerance:
            raise ValueError(f"{fp16_path}: FP16 model differs from FP32 by {half_errors} (relative max abs "
                             f"error) on {len(calibration)} calibration tiles, above the tolerance "
                             f"{fp16_tolerance}; manifest not written")
        manifest = replace(manifest, fp16={"file": fp16_path.name, "sha256": sha256_file(fp16_path),
                                           "tolerance": fp16_tolerance,
                                           "max_relative_error": {k: round(v, 6) for k, v in half_errors.items()},
                                           "calibration_tiles": int(len(calibration))})
    write_manifest(folder, manifest)
    return ExportReport(folder=folder, manifest=manifest, max_abs_error=errors, fp16_error=half_errors)
