"""Training loops of the bundled models (CPU, deterministic for a given seed and thread count)."""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .unet import UNet

# Boundary pixels are rare and are what separates touching nuclei.
NUCLEI_CLASS_WEIGHTS = (1.0, 1.0, 3.0)


def pearson_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 - Pearson correlation per sample, averaged (the in-silico-labeling loss)."""
    p = prediction.flatten(1)
    t = target.flatten(1)
    p = p - p.mean(dim=1, keepdim=True)
    t = t - t.mean(dim=1, keepdim=True)
    r = (p * t).sum(dim=1) / torch.sqrt((p * p).sum(dim=1) * (t * t).sum(dim=1) + eps)
    return (1.0 - r).mean()


def _schedule(step: int, steps: int, lr: float, warmup: int = 50) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _loop(model, batches, loss_fn, steps: int, lr: float, log_every: int, log) -> list[float]:
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    history = []
    started = time.perf_counter()
    model.train()
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = _schedule(step, steps, lr)
        images, targets = batches()
        output, _ = model(torch.from_numpy(images))
        loss = loss_fn(output, targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
        if log and (step % log_every == 0 or step == steps - 1):
            recent = np.mean(history[-log_every:])
            log(f"step {step + 1}/{steps}  loss {recent:.4f}  {time.perf_counter() - started:.0f} s")
    model.eval()
    return history


def train_nuclei(data_dir: Path, *, steps: int, seed: int = 0, batch: int = 8, crop: int = 128, lr: float = 2e-3,
                 base: int = 16, depth: int = 3, upsampling: str = "bilinear", max_images: int | None = None,
                 augmentation: data.Augmentation | None = data.Augmentation(), log=print, log_every: int = 100):
    """The ``nuclei`` model: background / interior / boundary on dsb2018_fluo's training split
    (:func:`data.dsb_split`), on crops augmented by ``augmentation`` (:func:`data.augmented_crops`;
    ``None``: rotations and flips only)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ids = data.dsb_ids(data_dir, held_out=False)[:max_images]
    fields = data.load_dsb_fields(data_dir, ids)
    if augmentation is None:
        augmentation = data.Augmentation(scale=(1.0, 1.0), native_p=1.0, intensity_p=0.0)
    if log:
        log(f"nuclei: {len(fields)} training images")
    model = UNet(1, len(data.NUCLEI_CLASSES), base=base, depth=depth, activation="relu", upsampling=upsampling)
    weights = torch.tensor(NUCLEI_CLASS_WEIGHTS)

    def batches():
        return data.augmented_crops(rng, fields, batch, crop, augmentation)

    def loss_fn(logits, targets):
        return F.cross_entropy(logits, torch.from_numpy(targets.astype(np.int64)), weight=weights)

    history = _loop(model, batches, loss_fn, steps, lr, log_every, log)
    return model, {"training_images": len(fields), "final_loss": float(np.mean(history[-log_every:])),
                   "split": "dsb2018_fluo, stratified by group (cellrt.training.data.dsb_split)",
                   "augmentation": {k: list(v) if isinstance(v, tuple) else v
                                    for k, v in asdict(augmentation).items()}}


def train_isl(data_dir: Path, *, steps: int, seed: int = 0, batch: int = 8, crop: int = 128, lr: float = 2e-3,
              base: int = 16, depth: int = 3, upsampling: str = "bilinear", holdout_x: int = 768, log=print,
              log_every: int = 100):
    """The ``isl-dapi`` model: DAPI from phase planes, trained left of column ``holdout_x``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    phase, dapi = data.load_isl(data_dir)
    field = [data.Sample(phase, dapi)]
    model = UNet(phase.shape[0], 1, base=base, depth=depth, activation="elu", upsampling=upsampling)

    def batches():
        return data.random_crops(rng, field, batch, crop, x_limit=holdout_x)

    def loss_fn(prediction, targets):
        return pearson_loss(prediction, torch.from_numpy(targets))

    history = _loop(model, batches, loss_fn, steps, lr, log_every, log)
    return model, {"training_region": f"x < {holdout_x}", "final_loss": float(np.mean(history[-log_every:]))}


def save_checkpoint(path: Path, model: UNet, info: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": model.config, "state_dict": model.state_dict(), "info": info}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[UNet, dict]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = dict(saved["config"])
    model = UNet(config.pop("in_channels"), config.pop("out_channels"), **config)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model, saved["info"]
