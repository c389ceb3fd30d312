"""``cellrt models``, ``cellrt predict``, ``cellrt build`` and ``cellrt export``."""
from __future__ import annotations

import csv
import importlib
import inspect
import json
import sys
from pathlib import Path

import numpy as np

from .._atomic import atomic_path


def run_models(as_json: bool = False) -> int:
    from ..pipeline.model import _bundled_root, available_models  # noqa: PLC0415
    from ..pipeline.plate import model_drift_reference  # noqa: PLC0415
    from ..runtime.manifest import load_manifest  # noqa: PLC0415

    rows = []
    for name in available_models():
        manifest = load_manifest(_bundled_root() / name)
        metrics = (manifest.training or {}).get("metrics", {})
        rows.append({"name": name, "kind": manifest.kind, "input_channels": list(manifest.input_channels),
                     "tile": manifest.tile_size, "overlap": manifest.overlap,
                     "outputs": [o.name for o in manifest.outputs], "folder": str(manifest.folder),
                     "description": manifest.description, "metrics": metrics,
                     "precisions": ["fp32"] + [name for name, section in (("fp16", manifest.fp16),
                                                                           ("int8", manifest.int8)) if section],
                     "int8_metrics": (manifest.int8 or {}).get("metrics", {}),
                     "drift_references": [precision for precision in ("fp32", "fp16", "int8")
                                          if model_drift_reference(manifest.folder, precision).is_file()]})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}  ({row['kind']}; inputs {', '.join(row['input_channels'])}; tile {row['tile']}, "
              f"overlap {row['overlap']})")
        print(f"    {row['description']}")
        if row["metrics"]:
            shown = {k: v for k, v in row["metrics"].items() if not isinstance(v, dict)}
            print("    held-out metrics: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        if row["int8_metrics"]:
            shown = {k: v for k, v in row["int8_metrics"].items() if not isinstance(v, dict)}
            print("    INT8 (--precision int8): " + ", ".join(f"{k}={v}" for k, v in shown.items()))
        print(f"    precisions: {', '.join(row['precisions'])}; drift references: "
              f"{', '.join(row['drift_references']) or 'none'}; {row['folder']}")
    return 0


def _read_field(paths: list[str], model) -> np.ndarray:
    import tifffile  # noqa: PLC0415

    planes = []
    for path in paths:
        try:
            image = tifffile.imread(path)
        except (OSError, ValueError) as error:
            raise SystemExit(f"cellrt predict: cannot read {path}: {error}") from error
        planes.append(image[None] if image.ndim == 2 else image)
    field = np.concatenate(planes)
    expected = len(model.manifest.input_channels)
    if field.shape[0] != expected:
        raise SystemExit(f"cellrt predict: model {model.name!r} takes {expected} channels "
                         f"{list(model.manifest.input_channels)}, the images {paths} hold {field.shape[0]}")
    return field


def write_table(path: Path, table: dict) -> None:
    """A columnar table as CSV, written atomically."""
    columns = list(table)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in zip(*(np.asarray(table[c]).tolist() for c in columns)):
            writer.writerow(row)


def run_predict(model_name: str, images: list[str], out: str, backend: str, threads: int,
                precision: str = "auto") -> int:
    import tifffile  # noqa: PLC0415

    from ..pipeline import load_model  # noqa: PLC0415
    from .run import fail, input_errors  # noqa: PLC0415

    try:
        model = load_model(model_name, backend=backend, threads=threads, precision=precision)
        field = _read_field(images, model)
        result = model.run(field)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "labels.tif") as tmp:
            tifffile.imwrite(tmp, result.labels, compression="zlib")
        with atomic_path(out_dir / "prediction.tif") as tmp:
            tifffile.imwrite(tmp, result.prediction.astype(np.float32), compression="zlib")
        write_table(out_dir / "objects.csv", result.objects)
    except input_errors() as error:
        return fail("predict", error)
    total = sum(result.timings.values())
    stages = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in result.timings.items())
    print(f"{model.name}: {result.count} objects in {field.shape[1]}x{field.shape[2]} px ({total:.2f} s: {stages})")
    print(f"wrote {out_dir / 'labels.tif'}, {out_dir / 'prediction.tif'}, {out_dir / 'objects.csv'}")
    return 0


def run_build(args) -> int:
    from ..pipeline.model import model_folder  # noqa: PLC0415
    from ..runtime import tensorrt as trt_runtime  # noqa: PLC0415
    from ..runtime.manifest import load_manifest  # noqa: PLC0415
    from .run import fail, input_errors  # noqa: PLC0415

    try:
        manifest = load_manifest(model_folder(args.model))
        min_batch, opt_batch, max_batch = args.batch
        profile = trt_runtime.Profile(min_batch, opt_batch, max_batch, args.tile or manifest.tile_size)
        artifact = trt_runtime.build_engine(manifest, precision=args.precision, profile=profile, flavour=args.flavour,
                                            compute_capabilities=args.compute_capability or None,
                                            cache=Path(args.cache) if args.cache else None, rebuild=args.rebuild,
                                            log=print)
    except input_errors() as error:
        return fail("build", error)
    state = "reused cached" if artifact.reused else f"built in {artifact.build_seconds:.1f} s:"
    print(f"{state} {artifact.path}")
    if artifact.fp16_error:
        print("fp16 vs fp32 (relative max abs error): " +
              ", ".join(f"{k} {v:.2e}" for k, v in artifact.fp16_error.items()))
    return 0


def run_export(args) -> int:
    """``cellrt export module:factory --spec spec.json --out DIR [--weights state_dict.pt]``."""
    import torch  # noqa: PLC0415

    from .._text import one_line  # noqa: PLC0415
    from ..export import to_onnx  # noqa: PLC0415
    from ..runtime.manifest import OutputSpec  # noqa: PLC0415
    from .run import fail, input_errors  # noqa: PLC0415

    # What the user named - the factory, the spec, the weights - ends the command in one line when it cannot
    # be used; an error raised inside the factory's own code keeps its traceback (it is theirs to debug).
    module_name, _, attribute = args.factory.partition(":")
    if not attribute:
        return fail("export", f"FACTORY should be 'package.module:callable', got {args.factory!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except ImportError as error:
        return fail("export", f"FACTORY {args.factory}: cannot import {module_name!r}: {error}")
    except AttributeError:
        return fail("export", f"FACTORY {args.factory}: module {module_name!r} has no {attribute!r}")
    try:
        spec = json.loads(Path(args.spec).read_text())
        outputs = [OutputSpec(o["name"], o["role"], tuple(o.get("channels", ())), o.get("size"), o.get("activation"))
                   for o in spec.pop("outputs")]
        factory_kwargs = spec.pop("factory_kwargs", {})
    except (OSError, ValueError) as error:
        return fail("export", f"--spec {args.spec}: {error}")
    except (KeyError, TypeError, AttributeError) as error:
        return fail("export", f"--spec {args.spec}: should be a JSON object with 'outputs': a list of "
                              f"{{'name', 'role', ...}} objects (and the manifest fields); {type(error).__name__}: "
                              f"{error}")
    parameters = inspect.signature(to_onnx).parameters
    given_elsewhere = {"module", "folder", "outputs", "verify_tiles"}
    unknown = sorted(set(spec) - set(parameters) - given_elsewhere)
    missing = sorted(n for n, p in parameters.items()
                     if p.default is inspect.Parameter.empty and n not in given_elsewhere and n not in spec)
    if unknown or missing:
        return fail("export", f"--spec {args.spec}: "
                              + "; ".join(([f"unknown field(s) {unknown}"] if unknown else [])
                                          + ([f"missing field(s) {missing}"] if missing else []))
                              + " (the manifest fields are the keyword arguments of cellrt.export.to_onnx)")
    module = factory(**factory_kwargs)
    if args.weights:
        try:
            module.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        except (OSError, RuntimeError, ValueError) as error:
            return fail("export", f"--weights {args.weights}: {one_line(error)}")
    verify = None
    try:
        if args.verify:
            verify = np.load(args.verify).astype(np.float32)
        report = to_onnx(module, Path(args.out), outputs=outputs, verify_tiles=verify, **spec)
    except input_errors() as error:
        return fail("export", error)
    print(f"exported {report.folder}: ONNX Runtime vs torch relative error {report.max_abs_error}; "
          f"fp16 vs fp32 {report.fp16_error}")
    return 0


def run_quantize(model_name: str, images: list[str], out: str | None, tolerance: float, tiles_per_image: int,
                 weight_bits: int = 8) -> int:
    """INT8 ONNX for a model folder, calibrated on the given real fields (one TIFF per field: (H, W) for a
    one-channel model, (C, H, W) stacks otherwise). With ``out``, a copy of the folder is quantised, and
    written there only when it is complete."""
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from ..export.int8 import QuantizationError, quantize_int8  # noqa: PLC0415
    from ..pipeline import load_model  # noqa: PLC0415
    from ..pipeline.model import model_folder  # noqa: PLC0415
    from .run import fail, input_errors  # noqa: PLC0415

    try:
        folder = model_folder(model_name)
    except input_errors() as error:
        return fail("quantize", error)
    if out is None and folder != Path(model_name):   # a bundled model or an archive's cache folder
        print(f"cellrt quantize: {model_name!r} is bundled or an archive; pass --out DIR for the copy to quantise",
              file=sys.stderr)
        return 2
    target = None if out is None else Path(out)
    if target is not None and target.exists():
        print(f"cellrt quantize: {target} exists; choose a new --out", file=sys.stderr)
        return 2
    work = None
    try:
        # The model and the images are checked in the given folder before anything is copied, so that their
        # errors name the user's files, not a temporary copy's.
        model = load_model(folder, backend="ort", tile_size="model")
        calibration = _calibration_tiles(model, images, tiles_per_image)
        if target is not None:
            # The copy is quantised under a temporary name beside --out and renamed only once it is complete: a
            # run that fails or is interrupted leaves no folder at --out that looks like a model.
            target.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
            shutil.copytree(folder, work, dirs_exist_ok=True)
        section = quantize_int8(work or folder, calibration, tolerance=tolerance, weight_bits=weight_bits,
                                record={"calibration_images": [Path(p).name for p in images]})
        if work is not None:
            work.rename(target)
            work = None
    except (QuantizationError, *input_errors()) as error:
        # The gate names the folder it quantised: the user asked for --out, not the copy removed below.
        return fail("quantize", str(error) if work is None else str(error).replace(str(work), str(target)))
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{(target or folder) / section['file']}: INT8 model, error vs FP32 on {len(calibration)} calibration "
          f"tiles {section['error']} (tolerance {tolerance}, embeddings {section['embedding_tolerance']}); run it "
          "with --precision int8")
    return 0


def _calibration_tiles(model, images: list[str], tiles_per_image: int) -> np.ndarray:
    """Up to ``tiles_per_image`` tiles of each image, spread over it, as the model sees them."""
    import tifffile  # noqa: PLC0415

    channels = len(model.manifest.input_channels)
    tiles = []
    for path in images:
        try:
            image = tifffile.imread(path)
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path}: {error}") from error
        if image.ndim == 2 and channels == 1:
            image = image[None]
        if image.ndim != 3 or image.shape[0] != channels:
            raise ValueError(f"{path}: model {model.name!r} takes {channels} channel(s) "
                             f"{list(model.manifest.input_channels)}; give (H, W) images for one channel or (C, H, W) "
                             f"stacks, got shape {image.shape}")
        prepared = model.prepare(image).tiles
        step = max(1, len(prepared) // tiles_per_image)
        tiles.append(prepared[::step][:tiles_per_image])
    return np.concatenate(tiles)


def run_pack(model_name: str, archive: str) -> int:
    from ..pipeline.model import model_folder  # noqa: PLC0415
    from ..runtime.archive import pack_model  # noqa: PLC0415
    from ..runtime.manifest import ManifestError  # noqa: PLC0415

    try:
        path = pack_model(model_folder(model_name), archive)
    except (ManifestError, ValueError) as error:
        print(f"cellrt pack: {error}", file=sys.stderr)
        return 1
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB; load it with cellrt.load_model({str(path)!r}) or "
          f"`cellrt run PLATE --model {path}`")
    return 0
