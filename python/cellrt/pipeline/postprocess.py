"""Post-processing by model kind: stitched model output -> labels and an objects table.

Each kind registers one function ``(model, image, dense, params) ->
(labels, count, extra_columns)``; the plate pipeline calls the same
registry, so a new kind (``instance`` with mask NMS, per-cell classifiers)
plugs in here without touching the rest.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..kernels._backend import array_module
from ..kernels.objects import instances_from_probability, segment
from ..kernels.labeling import measure

POSTPROCESSORS: dict[str, Callable] = {}


def register_postprocessor(kind: str, function: Callable | None = None):
    """Register ``function`` for model ``kind`` (usable as a decorator)."""
    def add(fn):
        POSTPROCESSORS[kind] = fn
        return fn
    return add(function) if function is not None else add


@register_postprocessor("semantic")
def semantic(manifest, image: np.ndarray, dense: np.ndarray, params: dict):
    """Class probabilities -> objects, split along the boundary class, each
    object classed by its mean probability over the object classes."""
    xp = array_module(dense)   # a device ``dense`` stays on the device through the whole step
    spec = manifest.dense_output
    classes = list(spec.channels)
    object_index = [classes.index(c) for c in manifest.object_classes]
    boundary_index = classes.index(manifest.boundary_class) if manifest.boundary_class else None
    if object_index == [1] and boundary_index == 2 and len(classes) == 3:
        stacked = dense   # (background, object, boundary) already: no copy of the field's probabilities
    else:
        interior = dense[object_index].sum(axis=0)
        boundary = dense[boundary_index] if boundary_index is not None else xp.zeros_like(interior)
        stacked = xp.stack([dense[0], interior, boundary])
    labels, count = instances_from_probability(stacked, **params)
    columns = {}
    if len(object_index) > 1 and count:
        table = measure(labels, xp.ascontiguousarray(dense[object_index]), channel_names=list(manifest.object_classes),
                        num_objects=count)
        means = xp.stack([xp.asarray(table[f"Intensity_MeanIntensity_{c}"]) for c in manifest.object_classes])
        columns["Classify_ClassIndex"] = xp.argmax(means, axis=0).astype(xp.int32)
    else:
        columns["Classify_ClassIndex"] = xp.zeros(count, xp.int32)
    return labels, count, columns


@register_postprocessor("image2image")
def image2image(manifest, image: np.ndarray, dense: np.ndarray, params: dict):
    """Predicted fluorescence -> nuclei (or other objects) by :func:`segment`
    on the first predicted channel, as published for in-silico labeling (on
    the device when the prediction is)."""
    xp = array_module(dense)
    labels, count = segment(xp.ascontiguousarray(dense[0]), **params)
    return labels, count, {}
