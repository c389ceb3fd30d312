#!/usr/bin/env python3
"""Fit the constants of cellrt's recursive gaussian (gaussian_blur_recursive).

    python tools/fit_recursive_gaussian.py

The blur approximates exp(-x^2 / 2) for x >= 0 (x in sigmas) by two damped
cosine pairs, as Deriche's fourth-order recursive gaussian does:

    (a0 cos(w0 x) + a1 sin(w0 x)) exp(-b0 x) + (c0 cos(w1 x) + c1 sin(w1 x)) exp(-b1 x)

Deriche (1993) published four-digit constants with a largest error of
6.0e-4 (at x = 0: a0 + c0 = 0.9994). This script starts from them and
minimises the largest error over x in [0, 14] by iteratively reweighted
least squares (weights grow where the error is largest), keeping the best
iterate. Deterministic (no random starts). Recorded result (scipy 1.x):

    largest error 1.649e-04
    a0, a1, b0, b1, w0, w1, c0, c1 =
    1.65517779, 3.40608775, 1.7401857, 1.67314935,
    0.628661731, 1.99053621, -0.65534243, -0.174997306

These are the constants in csrc/segment/filter.cpp
(recursive_gaussian_coefficients) and in the numba reference
(python/cellrt/kernels/_filters_numba.py). The script also prints, for a
few sigmas, the largest and summed (L1) difference between the discrete
kernel the recursion applies and scipy's truncated, normalised gaussian
taps: the L1 sum bounds the output error of one pass relative to the
largest input value.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

DERICHE_1993 = (1.6797, 3.7348, 1.7831, 1.7228, 0.6318, 1.9969, -0.6803, -0.2598)


def approximant(p, x):
    a0, a1, b0, b1, w0, w1, c0, c1 = p
    return ((a0 * np.cos(w0 * x) + a1 * np.sin(w0 * x)) * np.exp(-b0 * x)
            + (c0 * np.cos(w1 * x) + c1 * np.sin(w1 * x)) * np.exp(-b1 * x))


def fit(iterations: int = 300):
    x = np.linspace(0.0, 14.0, 7001)
    target = np.exp(-x * x / 2)
    p = np.array(DERICHE_1993)
    weights = np.ones_like(x)
    best = (np.abs(approximant(p, x) - target).max(), p.copy())
    for _ in range(iterations):
        p = least_squares(lambda q: weights * (approximant(q, x) - target), p,
                          xtol=1e-15, ftol=1e-15, gtol=1e-15).x
        err = np.abs(approximant(p, x) - target)
        if err.max() < best[0]:
            best = (err.max(), p.copy())
        weights = weights * (1 + err / err.max())
        weights /= weights.mean()
    return best


def discrete_kernel(p, sigma, half_width):
    """The recursion's kernel h[-K..K], gain normalised to 1, as the C++ computes it."""
    a0, a1, b0, b1, w0, w1, c0, c1 = p
    alpha = np.array([complex(a0, -a1), complex(c0, -c1)])
    poles = np.exp(np.array([complex(-b0, w0), complex(-b1, w1)]) / sigma)
    gain = (alpha / (1 - poles)).real.sum() + (alpha * poles / (1 - poles)).real.sum()
    k = np.arange(half_width + 1)
    h = sum((a * r ** k).real for a, r in zip(alpha / gain, poles))
    return np.concatenate([h[:0:-1], h])


def main() -> int:
    err, p = fit()
    print(f"largest error {err:.3e}")
    print("a0, a1, b0, b1, w0, w1, c0, c1 =")
    print(", ".join(f"{v:.9g}" for v in p))
    for sigma in (0.5, 1, 2, 5.67, 16.5, 66.5):
        radius = int(4 * sigma + 0.5)
        taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma * sigma))
        taps /= taps.sum()
        half = int(20 * sigma) + 10
        h = discrete_kernel(p, sigma, half)
        ref = np.zeros_like(h)
        ref[half - radius:half + radius + 1] = taps
        diff = np.abs(h - ref)
        print(f"sigma {sigma:6.2f}: largest tap difference {diff.max() / taps.max():.2e} of the peak, "
              f"L1 {diff.sum():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
