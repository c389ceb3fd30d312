"""numba references for gaussian_blur and box_mean: direct 2-D window sums
in float64 (no separability, no running sums), from the contract."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _index(i, n, mode):
    if 0 <= i < n:
        return i
    if mode == 1:
        return 0 if i < 0 else n - 1
    period = 2 * n
    i = i % period
    return i if i < n else period - 1 - i


@njit(cache=True, parallel=True)
def _separable_weights_sum(image, wy, wx, ry, rx, mode):
    height, width = image.shape
    out = np.empty((height, width), np.float32)
    for y in prange(height):
        for x in range(width):
            acc = 0.0
            for dy in range(-ry, len(wy) - ry):
                yy = _index(y + dy, height, mode)
                row = 0.0
                for dx in range(-rx, len(wx) - rx):
                    row += wx[dx + rx] * image[yy, _index(x + dx, width, mode)]
                acc += wy[dy + ry] * row
            out[y, x] = acc
    return out


def gaussian_blur(image, sigma, truncate, mode):
    radius = int(truncate * sigma + 0.5) if sigma > 0 else 0
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * k * k / (sigma * sigma)) if radius else np.ones(1)
    w /= w.sum()
    return _separable_weights_sum(image, w, w, radius, radius, mode)


# gaussian_blur_recursive's constants (tools/fit_recursive_gaussian.py):
# exp(-x^2/2) ~ (a0 cos w0x + a1 sin w0x) e^(-b0 x) + (c0 cos w1x + c1 sin w1x) e^(-b1 x), x >= 0.
RECURSIVE_GAUSSIAN = (1.65517779, 3.40608775, 1.7401857, 1.67314935, 0.628661731, 1.99053621, -0.65534243,
                      -0.174997306)


def recursive_gaussian_kernel(sigma: float) -> np.ndarray:
    """The kernel the recursion applies, h[-K..K], summed in closed form rather than run as a recursion:
    h[k] = sum_p Re(alpha_p pole_p^|k|), the gain normalised to 1; K is where the tail left out weighs
    < 1e-9."""
    a0, a1, b0, b1, w0, w1, c0, c1 = RECURSIVE_GAUSSIAN
    alpha = np.array([complex(a0, -a1), complex(c0, -c1)])
    poles = np.exp(np.array([complex(-b0, w0), complex(-b1, w1)]) / sigma)
    gain = (alpha / (1 - poles)).real.sum() + (alpha * poles / (1 - poles)).real.sum()
    k = np.arange(int(30.0 * sigma) + 8, dtype=np.float64)
    h = sum((a * p ** k).real for a, p in zip(alpha / gain, poles))
    tail = np.cumsum(np.abs(h[::-1]))[::-1]
    half = int(np.argmax(tail < 1e-9 * abs(h[0]))) or len(h) - 1
    return np.concatenate([h[half:0:-1], h[:half + 1]])


@njit(cache=True, parallel=True)
def _convolve_columns_then_rows(image, w, radius, mode):
    height, width = image.shape
    columns = np.empty((height, width), np.float64)
    for y in prange(height):
        for x in range(width):
            acc = 0.0
            for k in range(-radius, radius + 1):
                acc += w[k + radius] * image[_index(y + k, height, mode), x]
            columns[y, x] = acc
    out = np.empty((height, width), np.float32)
    for y in prange(height):
        for x in range(width):
            acc = 0.0
            for k in range(-radius, radius + 1):
                acc += w[k + radius] * columns[y, _index(x + k, width, mode)]
            out[y, x] = acc
    return out


def gaussian_blur_recursive(image, sigma, mode):
    """Direct convolution (float64, columns then rows) with the kernel the
    recursion applies: O(sigma) per pixel, an independent check of the
    recursion, its warm-up and its borders rather than a fast path."""
    if sigma == 0:
        return image.copy()
    w = recursive_gaussian_kernel(sigma)
    return _convolve_columns_then_rows(image, w, (len(w) - 1) // 2, mode)


def box_mean(image, size_y, size_x, mode):
    wy = np.full(size_y, 1.0 / size_y)
    wx = np.full(size_x, 1.0 / size_x)
    return _separable_weights_sum(image, wy, wx, size_y // 2, size_x // 2, mode)




@njit(cache=True)
def _row_clearance(row, invert, cap, out):
    width = row.shape[0]
    run = cap
    for x in range(width):
        if (row[x] != 0) != invert:
            run = run + 1 if run < cap else cap
        else:
            run = -1
        out[x] = run
    run = cap
    for x in range(width - 1, -1, -1):
        if out[x] >= 0:
            run = run + 1 if run < cap else cap
        else:
            run = -1
        if run < out[x]:
            out[x] = run


@njit(cache=True, parallel=True)
def binary_morphology(mask, half_widths, dilate):
    """Erosion by the footprint whose row dy has half-width half_widths[dy + r]
    (dilation: the complement of the eroded complement)."""
    height, width = mask.shape
    radius = (half_widths.shape[0] - 1) // 2
    clearance = np.empty((height, width), np.int16)
    for y in prange(height):
        _row_clearance(mask[y], dilate, radius, clearance[y])
    out = np.empty((height, width), np.bool_)
    for row in prange(height):
        y = np.int64(row)   # prange indices may be unsigned: -y must not wrap
        for x in range(width):
            keep = True
            for dy in range(max(-radius, -y), min(radius, height - 1 - y) + 1):
                if clearance[y + dy, x] < half_widths[dy + radius]:
                    keep = False
                    break
            out[y, x] = keep != dilate
    return out
