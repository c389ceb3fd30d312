"""Training-side helpers for the bundled models (needs torch: ``pip install torch==2.13.0``).

Nothing under ``cellrt.training`` is imported by inference code; the engine
only ever sees the exported ONNX file and its manifest.
"""
