"""Inference backends (ONNX Runtime, TensorRT) and model manifests.

Every backend has one protocol: ``infer(batch) -> {output name: array}``
for a ``[N, C, H, W]`` float32 batch. TensorRT names are imported lazily:
``cellrt.runtime`` itself never imports tensorrt or cupy.
"""
from .manifest import Manifest, ManifestError, OutputSpec, load_manifest, sha256_file, write_manifest
from .ort import OrtBackend

_TENSORRT_NAMES = ("EngineArtifact", "EngineError", "Profile", "TensorRTBackend", "build_engine",
                   "check_fp16_accuracy", "engine_key", "import_tensorrt", "load_engine")


def __getattr__(name):
    if name in _TENSORRT_NAMES:
        from . import tensorrt  # noqa: PLC0415
        return getattr(tensorrt, name)
    raise AttributeError(f"module 'cellrt.runtime' has no attribute {name!r}")


__all__ = ["Manifest", "ManifestError", "OutputSpec", "OrtBackend", "load_manifest", "sha256_file",
           "write_manifest", *_TENSORRT_NAMES]
