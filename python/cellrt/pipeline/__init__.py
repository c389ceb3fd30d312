"""Fields through a model: tile -> infer -> stitch -> post-process -> measure."""
from .model import FieldResult, Model, available_models, load_model
from .postprocess import POSTPROCESSORS, register_postprocessor

__all__ = ["FieldResult", "Model", "available_models", "load_model", "POSTPROCESSORS", "register_postprocessor"]
