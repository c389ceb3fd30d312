"""Slow float64 NumPy references for the kernels, written from the contracts.

They share no code with cellrt: the reflect padding is numpy's own
``np.pad(mode="reflect")`` and the blend is a direct weighted average.
"""

from __future__ import annotations

import numpy as np

BLENDS = ("constant", "linear", "cosine", "gaussian", "crop")


def tile_reference(image, origins, th, tw, scale=None, offset=None):
    """image [C,H,W] -> tiles [N,C,th,tw] float64 of (pixel - offset) * scale."""
    c = image.shape[0]
    scale = np.ones(c) if scale is None else np.asarray(scale, np.float64)
    offset = np.zeros(c) if offset is None else np.asarray(offset, np.float64)
    padded = np.pad(image.astype(np.float64), ((0, 0), (0, th), (0, tw)), mode="reflect")
    out = np.empty((len(origins), c, th, tw))
    for k, (y, x) in enumerate(origins):
        out[k] = (padded[:, y:y + th, x:x + tw] - offset[:, None, None]) * scale[:, None, None]
    return out


def window_reference(length, lo_inside, hi_inside, blend, overlap, sigma_scale=0.125):
    i = np.arange(length, dtype=np.float64)
    w = np.ones(length)
    if blend in ("linear", "cosine") and overlap > 0:
        for d, inside in ((i, lo_inside), (length - 1 - i, hi_inside)):
            if inside:
                t = (d + 0.5) / overlap
                ramp = t if blend == "linear" else 0.5 - 0.5 * np.cos(np.pi * t)
                w = np.where(d < overlap, w * ramp, w)
    elif blend == "gaussian":
        centre = (length - 1) / 2
        g = np.exp(-((i - centre) ** 2) / (2 * (sigma_scale * length) ** 2))
        flat = ((i < centre) & (not lo_inside)) | ((i > centre) & (not hi_inside))
        w = np.where(flat, 1.0, g)
    return np.maximum(w, 1e-4)


def stitch_reference(tiles, origins, height, width, blend="gaussian", overlap=(0, 0), sigma_scale=0.125,
                     activation=None, argmax=False, fill_value=0.0):
    tiles = np.asarray(tiles, np.float64)
    n, c, th, tw = tiles.shape
    num = np.zeros((c, height, width))
    den = np.zeros((height, width))
    best = np.full((height, width), np.inf)
    for k in range(n):
        y, x = (int(v) for v in origins[k])
        hy, hx = min(th, height - y), min(tw, width - x)
        if blend == "crop":
            yy, xx = np.mgrid[y:y + hy, x:x + hx]
            d = (2 * yy - (2 * y + th - 1)) ** 2 + (2 * xx - (2 * x + tw - 1)) ** 2
            win = d < best[y:y + hy, x:x + hx]
            best[y:y + hy, x:x + hx][win] = d[win]
            num[:, y:y + hy, x:x + hx][:, win] = tiles[k, :, :hy, :hx][:, win]
            den[y:y + hy, x:x + hx][win] = 1.0
            continue
        wy = window_reference(th, y > 0, y + th < height, blend, overlap[0], sigma_scale)
        wx = window_reference(tw, x > 0, x + tw < width, blend, overlap[1], sigma_scale)
        w = np.outer(wy, wx)[:hy, :hx]
        num[:, y:y + hy, x:x + hx] += w * tiles[k, :, :hy, :hx]
        den[y:y + hy, x:x + hx] += w
    covered = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(covered, num / np.where(covered, den, 1.0), fill_value)
    if argmax:
        labels = np.argmax(out, axis=0).astype(np.int32)
        labels[~covered] = -1
        return labels
    if activation == "sigmoid":
        out = np.where(covered, 1 / (1 + np.exp(-out)), out)
    elif activation == "softmax":
        e = np.exp(out - out.max(axis=0))
        out = np.where(covered, e / e.sum(axis=0), out)
    return out


def percentile_reference(image, lo, hi):
    return [(np.percentile(ch, lo), np.percentile(ch, hi)) for ch in image]

