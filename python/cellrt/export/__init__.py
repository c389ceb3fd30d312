"""Export a PyTorch model to a cellrt model folder: ONNX + mixed-precision ONNX + manifest.

Needs the export extra (``pip install torch==2.13.0`` first, then
``pip install "cellrt[export]"``); inference never imports this module.
"""
from .onnx_export import ExportReport, to_onnx
from .fp16 import FP16_BLOCKED_OPS, convert_to_fp16, fp16_error

__all__ = ["ExportReport", "to_onnx", "convert_to_fp16", "fp16_error", "FP16_BLOCKED_OPS"]
