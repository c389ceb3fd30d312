// Splitting touching objects by shape: the Euclidean distance transform of a
// mask, its h-maxima (one seed per object), and a seeded watershed that
// grows the seeds over the mask in order of a surface (the negated distance),
// so that touching round objects part along the neck between them.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// Exact Euclidean distance from every non-zero pixel of `mask` to the nearest
// zero pixel (0 on zero pixels), as scipy.ndimage.distance_transform_edt:
// pixels beyond the border are not background. +inf where the mask has no
// zero pixel at all. Separable lower envelopes of parabolas (Felzenszwalb and
// Huttenlocher), exact integer squared distances; each value is the double
// square root of one, rounded to float.
//
// Args:
//   mask: [H, W] uint8, C-contiguous, host memory.
//   out:  [H, W] float32, C-contiguous, host memory.
void distance_transform(const TensorView& mask, const TensorView& out, int32_t num_threads = 0);

// One seed pixel per h-maximum of `values`: per dome that rises at least `h`
// above the saddle where it meets a higher one (and per component's highest
// peak), the dome's highest pixel (the first in raster order on ties),
// labelled 1..N in raster order; 0 elsewhere. Pixels with values <= 0 are
// background. Bumps lower than h (the slow undulation of an elongated
// object's distance ridge) are not seeds; a plateau is one seed. Sorting the
// pixels by value, then union-find along the order.
//
// Args:
//   values: [H, W] float32, C-contiguous, host memory (no NaN).
//   seeds:  [H, W] int32, C-contiguous, host memory; overwritten.
// Returns the number of seeds.
int64_t h_maxima_seeds(const TensorView& values, float h, const TensorView& seeds, int32_t connectivity);

// In place: seeded watershed (priority flooding). `labels` holds the seeds
// (> 0) and 0 elsewhere; every unlabelled pixel of `mask` reachable from a
// seed through the mask takes the label of the neighbour it is reached from,
// pixels being reached in increasing order of `surface` (ties: first come,
// first served), 4- or 8-connected. Seeds outside the mask are cleared.
// Deterministic: components of the mask are flooded one at a time (shared
// out among `num_threads` workers; 0 = all hardware threads), which gives
// the labels of one flood over the whole image. Returns the number of
// pixels labelled.
//
// Args:
//   surface: [H, W] float32, C-contiguous (no NaN).
//   labels:  [H, W] int32, C-contiguous; updated.
//   mask:    [H, W] uint8, C-contiguous.
int64_t watershed(const TensorView& surface, const TensorView& labels, const TensorView& mask,
                  int32_t connectivity, int32_t num_threads = 0);

}  // namespace cellrt
