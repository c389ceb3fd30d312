"""Rebuild the torch UNet of an exported model from its ONNX weights.

The exporter folds each BatchNorm into the convolution before it; the
rebuilt module gets the folded weights and an identity BatchNorm that adds
the folded bias, so it computes what the ONNX graph computes. Used by the
plate benchmark's naive torch stack (the same model on both sides) and by
tests.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .unet import UNet


def unet_from_onnx(onnx_path: Path) -> UNet:
    import onnx  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415

    model = onnx.load(str(onnx_path))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # cellrt.export.graph_passes split each skip join's convolution by input channels: join them again.
    parts: dict[str, dict[int, np.ndarray]] = {}
    for name in list(weights):
        split = re.fullmatch(r"(.+)\.concat_part(\d+)", name)
        if split:
            parts.setdefault(split.group(1), {})[int(split.group(2))] = weights.pop(name)
    for whole, pieces in parts.items():
        weights[whole] = np.concatenate([pieces[i] for i in sorted(pieces)], axis=1)
    depth = sum(1 for name in weights if name.startswith("encoders.") and name.endswith(".0.weight"))
    base = weights["encoders.0.0.weight"].shape[0]
    activation = "elu" if any(node.op_type == "Elu" for node in model.graph.node) else "relu"
    # nn.Sequential(Conv2d, Upsample) names its convolution upsamplers.<i>.0; a ConvTranspose2d is upsamplers.<i>.
    upsampling = "bilinear" if "upsamplers.0.0.weight" in weights else "transpose"
    unet = UNet(weights["encoders.0.0.weight"].shape[1], weights["head.weight"].shape[0], base=base, depth=depth,
                activation=activation, upsampling=upsampling)
    state = unet.state_dict()
    loaded = {}
    for key in state:
        if key.endswith(".weight") and key in weights:
            loaded[key] = weights[key]
        elif key.endswith(".bias") and key in weights:
            loaded[key] = weights[key]
    for key, value in weights.items():
        if not key.endswith(".weight_bias"):
            continue
        conv = key[:-len(".weight_bias")]            # e.g. encoders.0.0
        parent, index = conv.rsplit(".", 1)
        norm = f"{parent}.{int(index) + 1}"          # the BatchNorm after it
        eps = dict(unet.named_modules())[norm].eps
        loaded[f"{norm}.weight"] = np.ones_like(value)
        loaded[f"{norm}.bias"] = value
        loaded[f"{norm}.running_mean"] = np.zeros_like(value)
        loaded[f"{norm}.running_var"] = np.full_like(value, 1.0 - eps)
    missing = [k for k in state if k not in loaded and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{onnx_path}: no ONNX weights for {missing[:5]} (not an exported cellrt UNet?)")
    unet.load_state_dict({k: torch.from_numpy(np.array(v, dtype=v.dtype, copy=True)) for k, v in loaded.items()}, strict=False)
    return unet.eval()
