"""The ``cellrt`` command line."""

from __future__ import annotations

import argparse
import sys


def _int_at_least(minimum: int, meaning: str = ""):
    """An argparse type: an int >= ``minimum`` (argparse names the option in its error)."""
    expected = f"expected an integer >= {minimum}{meaning}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{expected}, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1)
_thread_count = _int_at_least(0, " (0: all cores)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cellrt", description="Inference engine for high-content screening.")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="report what this installation can run")
    doctor.add_argument("--json", action="store_true", help="print machine-readable JSON")

    demo = sub.add_parser("demo", help="run the bundled nuclei model over the bundled demo plate; writes a report")
    demo.add_argument("--out", default="cellrt-demo", help="output folder (default: ./cellrt-demo)")

    run = sub.add_parser("run", help="run a model over a plate: per-object tables, well summaries, a report")
    run.add_argument("plate", help="plate folder of TIFFs, OME-Zarr HCS plate, or OME-TIFF plate (file or folder)")
    run.add_argument("--model", required=True, help="bundled model name (see `cellrt models`) or model folder")
    run.add_argument("--out", required=True, help="output folder (one run per folder)")
    run.add_argument("--layout", default="auto",
                     help="'imagexpress', 'operetta', 'glob', 'ome-zarr', 'ome-tiff', a pattern such as '{well}_s{field}_w{channel}.tif', "
                          "or a regular expression with named groups (default: detect a preset)")
    run.add_argument("--z", type=_positive_int, default=1, metavar="N",
                     help="z plane to read where the layout names {z} (Operetta p01, p02...; default 1)")
    run.add_argument("--timepoint", type=_positive_int, default=1, metavar="N",
                     help="time point to read where the layout names {timepoint} (default 1)")
    run.add_argument("--channel", action="append", default=[], metavar="MODEL=PLATE",
                     help="which plate channel feeds a model input, e.g. DNA=1 (repeatable)")
    run.add_argument("--backend", default="auto", choices=["auto", "ort", "tensorrt"])
    run.add_argument("--batch", type=_positive_int, default=8, help="tiles per inference batch (across fields)")
    run.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"],
                     help="auto: fp16 on TensorRT, fp32 on ONNX Runtime; int8: the model's quantised ONNX (CPU)")
    run.add_argument("--tile", default="auto",
                     help="tile size: 'auto' (sized to the field, least recomputed overlap), 'model' (the "
                          "manifest's) or pixels")
    run.add_argument("--workers", type=_positive_int, default=2, help="post-processing threads")
    run.add_argument("--readers", type=_positive_int, default=2, help="reader threads")
    run.add_argument("--threads", type=_thread_count, default=0, help="ONNX Runtime threads (0: all cores)")
    run.add_argument("--format", default="parquet", choices=["parquet", "csv"], help="per-object table format")
    run.add_argument("--save-labels", action="store_true",
                     help="also write label images (labels/<well>_fNN.tif, or under each field of images.ome.zarr)")
    run.add_argument("--save-predictions", action="store_true",
                     help="also write the model's predicted channels or class probabilities "
                          "(predictions/<well>_fNN.ome.tif, or images.ome.zarr)")
    run.add_argument("--images-format", default="tiff", choices=["tiff", "ome-zarr"],
                     help="format of saved label/prediction images (ome-zarr: one NGFF 0.4 HCS plate)")
    run.add_argument("--drift-reference", default="auto", metavar="FILE|auto|none",
                     help="drift reference (.npz from `cellrt drift-reference`); 'auto': the model's own when it "
                          "was made at this run's precision; 'none': no drift monitoring")
    run.add_argument("--object-diameter", default="auto", metavar="auto|none|PIXELS",
                     help="typical object diameter in the plate's pixels: 'auto' estimates it from a sample of "
                          "fields; fields outside the model's range are resampled to its scale; 'none': as "
                          "they are")
    run.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                     help="the plate's pixel size in micrometres, over its metadata's (OME PhysicalSizeX, NGFF "
                          "scale): adds um/um2 columns, and scales fields for models that record a pixel size")
    run.add_argument("--normalization", default="auto", choices=["auto", "field", "plate"],
                     help="percentiles of each field, or of a sample of the plate's fields (so intensities do not "
                          "move with a field's content); auto: per plate for image2image models, else per field")
    run.add_argument("--resume", action="store_true", help="skip wells already completed in --out")
    run.add_argument("--skip-bad", action="store_true",
                     help="record unreadable or malformed fields in errors.csv and carry on")

    check = sub.add_parser("check", help="before a run: the object scale a plate's fields show, what will be "
                                         "resampled, and whether the model is in its range")
    check.add_argument("plate", help="plate folder of TIFFs, OME-Zarr HCS plate, or OME-TIFF plate (file or folder)")
    check.add_argument("--model", required=True, help="bundled model name (see `cellrt models`) or model folder")
    check.add_argument("--layout", default="auto", help="as for `cellrt run`")
    check.add_argument("--channel", action="append", default=[], metavar="MODEL=PLATE",
                       help="which plate channel feeds a model input, e.g. DNA=1 (repeatable)")
    check.add_argument("--object-diameter", default="auto", metavar="auto|none|PIXELS", help="as for `cellrt run`")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")

    drift = sub.add_parser("drift-reference", help="make a drift reference from the fields of a finished run "
                                                   "(e.g. a reference plate, or its control wells)")
    drift.add_argument("run_dir", help="output folder of a `cellrt run` (its wells/*.json hold the embeddings)")
    drift.add_argument("--out", required=True, help="the reference file to write (.npz)")
    drift.add_argument("--wells", default="", help="wells to take: 'A01,B03' or ranges such as 'A01-H02' (rows A-H "
                                                   "of columns 1-2), comma-separated (default: every well)")
    drift.add_argument("--window", type=int, default=16, help="fields in the sliding window (default 16)")
    drift.add_argument("--ert", type=float, default=1000.0,
                       help="fields expected between false alarms on a plate without drift (default 1000)")
    drift.add_argument("--seed", type=int, default=0, help="seed of the reference/calibration split")

    stitch_demo = sub.add_parser("stitch-demo", help="tile and stitch a bundled real 16-bit field on every backend, "
                                                     "then run the nuclei model on it")
    stitch_demo.add_argument("--out", default="cellrt-stitch-demo", help="output folder")
    stitch_demo.add_argument("--image", default=None, help="a 2-D TIFF to use instead of the bundled field")
    stitch_demo.add_argument("--tile", type=int, default=256, help="tile side in pixels (default 256)")
    stitch_demo.add_argument("--overlap", type=float, default=0.25, help="overlap, fraction of the tile")
    stitch_demo.add_argument("--repeats", type=_positive_int, default=5, help="timed repeats per backend (default 5)")

    models = sub.add_parser("models", help="list the bundled models and their held-out metrics")
    models.add_argument("--json", action="store_true", help="print machine-readable JSON")

    predict = sub.add_parser("predict", help="run one field (TIFF, one file per channel) through a model")
    predict.add_argument("model", help="bundled model name (see `cellrt models`) or model folder")
    predict.add_argument("images", nargs="+", help="TIFF file(s): one per input channel, or one (C, H, W) stack")
    predict.add_argument("--out", required=True, help="folder for labels.tif, prediction.tif, objects.csv")
    predict.add_argument("--backend", default="auto", choices=["auto", "ort", "tensorrt"])
    predict.add_argument("--threads", type=_thread_count, default=0, help="ONNX Runtime threads (0: all cores)")
    predict.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])

    quantize = sub.add_parser("quantize", help="make the INT8 ONNX of a model (CPU inference), calibrated on "
                                               "real fields, checked against FP32")
    quantize.add_argument("model", help="model folder (quantised in place) or bundled model name (with --out)")
    quantize.add_argument("images", nargs="+", help="TIFF fields to calibrate on: (H, W), or (C, H, W) stacks")
    quantize.add_argument("--out", default=None, help="write a quantised copy of the model folder here")
    quantize.add_argument("--tolerance", type=float, default=0.05,
                          help="largest INT8 error allowed per output: argmax disagreement for class logits, "
                               "relative RMS error otherwise (default 0.05)")
    quantize.add_argument("--tiles-per-image", type=_positive_int, default=4,
                          help="calibration tiles taken per image (>= 1)")
    quantize.add_argument("--weight-bits", type=int, choices=[7, 8], default=8,
                          help="8, or 7: exact on x86 CPUs without VNNI too, a little less accurate")

    pack = sub.add_parser("pack", help="write a model folder (or bundled model) as one .zip archive")
    pack.add_argument("model", help="model folder or bundled model name")
    pack.add_argument("archive", help="the .zip to write")

    build = sub.add_parser("build", help="build (or reuse) a TensorRT / TensorRT-RTX engine for a model")
    build.add_argument("model", help="bundled model name or model folder")
    build.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    build.add_argument("--flavour", default="auto", choices=["auto", "tensorrt", "tensorrt_rtx"])
    build.add_argument("--compute-capability", nargs="*", default=[],
                       help="targets such as 86 89 (TensorRT-RTX builds ahead of time; default: this GPU)")
    build.add_argument("--batch", nargs=3, type=int, default=[1, 8, 16], metavar=("MIN", "OPT", "MAX"))
    build.add_argument("--tile", type=int, default=0, help="tile side (default: the manifest's)")
    build.add_argument("--cache", default=None, help="engine cache folder (default: ~/.cache/cellrt/engines)")
    build.add_argument("--rebuild", action="store_true", help="build even if a matching engine is cached")

    export = sub.add_parser("export", help="export a torch model to a cellrt model folder (needs torch)")
    export.add_argument("factory", help="'package.module:callable' returning the torch.nn.Module")
    export.add_argument("--spec", required=True, help="JSON with the manifest fields (see cellrt.export.to_onnx)")
    export.add_argument("--weights", default=None, help="state_dict file to load into the module")
    export.add_argument("--verify", default=None, help=".npy of real [N, C, H, W] tiles to verify the export on")
    export.add_argument("--out", required=True, help="model folder to write")

    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .doctor import run_doctor

        return run_doctor(as_json=args.json)
    if args.command in ("models", "predict", "build", "export", "quantize", "pack"):
        from . import models as commands

        if args.command == "models":
            return commands.run_models(as_json=args.json)
        if args.command == "predict":
            return commands.run_predict(args.model, args.images, args.out, args.backend, args.threads,
                                        args.precision)
        if args.command == "pack":
            return commands.run_pack(args.model, args.archive)
        if args.command == "quantize":
            return commands.run_quantize(args.model, args.images, args.out, args.tolerance, args.tiles_per_image,
                                         args.weight_bits)
        if args.command == "build":
            return commands.run_build(args)
        return commands.run_export(args)
    if args.command == "demo":
        from .run import run_demo

        return run_demo(args.out)
    if args.command == "check":
        from .run import run_check

        return run_check(args.plate, args.model, layout=args.layout, channels=args.channel,
                         object_diameter=args.object_diameter, as_json=args.json)
    if args.command == "drift-reference":
        from .run import run_drift_reference

        return run_drift_reference(args.run_dir, args.out, wells=args.wells, window=args.window, ert=args.ert,
                                   seed=args.seed)
    if args.command == "run":
        from .run import run_plate

        return run_plate(args.plate, args.model, args.out, backend=args.backend, batch=args.batch,
                         workers=args.workers, readers=args.readers, threads=args.threads, resume=args.resume,
                         skip_bad=args.skip_bad, layout=args.layout, z=args.z, timepoint=args.timepoint,
                         channels=args.channel, table_format=args.format,
                         save_labels=args.save_labels, save_predictions=args.save_predictions,
                         images_format=args.images_format, tile=args.tile, precision=args.precision,
                         drift_reference=None if args.drift_reference == "none" else args.drift_reference,
                         object_diameter=args.object_diameter, normalization=args.normalization,
                         pixel_size=args.pixel_size)
    from .demo import run_demo as run_stitch_demo
    from .run import fail, input_errors

    try:
        return run_stitch_demo(out=args.out, image_path=args.image, tile_size=args.tile, overlap=args.overlap,
                               repeats=args.repeats)
    except input_errors() as error:   # a bad --tile / --overlap / --image: the kernels' messages name it
        return fail("stitch-demo", error)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
