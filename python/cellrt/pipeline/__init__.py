"""Fields through a model: tile -> infer -> stitch -> post-process -> measure."""
from .model import FieldResult, Model, available_models, load_model
from .postprocess import POSTPROCESSORS, register_postprocessor

# The plate runner and live acquisition (cellrt.pipeline.plate / .live) import
# the I/O layer; they are imported where used so `import cellrt` stays light.

__all__ = ["FieldResult", "Model", "available_models", "load_model", "POSTPROCESSORS", "register_postprocessor"]
