// mask_nms: non-maximum suppression of instance masks - the duplicates an
// instance model (Mask R-CNN style) reports for one cell, or that
// overlapping tiles report for a cell cut at a tile seam.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

struct MaskNmsOptions {
  // A kept instance suppresses a lower-scored one whose masks overlap with
  // intersection over union above iou_threshold, or with intersection over
  // the smaller mask above ios_threshold (a cell cut at a tile seam is
  // mostly inside its complete twin; > 1 turns the test off).
  float iou_threshold = 0.5f;
  float ios_threshold = 2.0f;
  // Only instances of the same class suppress each other (needs classes).
  bool class_aware = true;
  int32_t num_threads = 0;  // 0 = all hardware threads
};

// Instances: boxes (N, 4) int32 [y0, x0, y1, x1) in field pixels,
// half-open; scores (N,) float32; classes (N,) int32, or a view with
// data == nullptr when classes are not given; masks as one buffer:
// instance i's mask is the (y1 - y0) x (x1 - x0) row-major uint8 block at
// mask_data[mask_offsets[i]] (non-zero = inside). All host memory, or all
// CUDA memory: then the masks' areas and the pairs' overlaps are computed on
// the GPU and the small tables (boxes, scores, offsets) read back, on the
// default stream; the call synchronises. Inputs written on a non-blocking
// stream, which the default stream does not wait for, should be complete
// before the call.
//
// Greedy, by descending score (ties: lower index first): each instance not
// yet suppressed is kept and suppresses the overlapping lower-ranked ones.
// Candidate pairs come from a spatial grid over the boxes, so the cost
// follows the overlapping pairs, not N^2. keep (N,) uint8 is written: 1 for
// kept. Returns the number kept.
int64_t mask_nms(const TensorView& boxes, const TensorView& scores, const TensorView& classes,
                 const TensorView& mask_offsets, const TensorView& mask_data, const TensorView& keep,
                 const MaskNmsOptions& options);

enum class MatrixNmsKernel : int32_t { kGaussian = 0, kLinear = 1 };

struct MatrixNmsOptions {
  MatrixNmsKernel kernel = MatrixNmsKernel::kGaussian;
  double sigma = 2.0;       // gaussian: f(iou) = exp(-sigma iou^2)
  bool class_aware = true;
  int32_t num_threads = 0;
};

// Matrix NMS (SOLOv2), the parallel variant: nothing is removed; every
// score decays by its overlap with higher-scored instances,
// decayed[j] = score[j] * min over higher-ranked i of f(iou_ij) / f(comp_i)
// (comp_i: i's own largest IoU with a higher-ranked instance; f as in
// options, 1 - iou for kLinear). Same instance layout as mask_nms; host
// memory; decayed (N,) float32 is written. Threshold it to keep instances.
void matrix_nms(const TensorView& boxes, const TensorView& scores, const TensorView& classes,
                const TensorView& mask_offsets, const TensorView& mask_data, const TensorView& decayed,
                const MatrixNmsOptions& options);

}  // namespace cellrt
