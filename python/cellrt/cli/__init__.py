"""The ``cellrt`` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cellrt", description="Inference engine for high-content screening.")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="report what this installation can run")
    doctor.add_argument("--json", action="store_true", help="print machine-readable JSON")

    demo = sub.add_parser("demo", help="tile and stitch a bundled real 16-bit field on every backend")
    demo.add_argument("--out", default="cellrt-demo", help="output folder (default: ./cellrt-demo)")
    demo.add_argument("--image", default=None, help="a 2-D TIFF to use instead of the bundled field")
    demo.add_argument("--tile", type=int, default=256, help="tile side in pixels (default 256)")
    demo.add_argument("--overlap", type=float, default=0.25, help="overlap, fraction of the tile (default 0.25)")
    demo.add_argument("--repeats", type=int, default=5, help="timed repeats per backend (default 5)")

    args = parser.parse_args(argv)
    if args.command == "doctor":
        from .doctor import run_doctor

        return run_doctor(as_json=args.json)
    from .demo import run_demo

    return run_demo(out=args.out, image_path=args.image, tile_size=args.tile, overlap=args.overlap,
                    repeats=args.repeats)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
