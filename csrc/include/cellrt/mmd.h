// rbf_kernel: Gaussian (RBF) kernel values between embedding vectors, or
// their sums over a point set - the arithmetic of the streaming MMD drift
// monitor (cellrt.drift), which adds one sample's kernel sums per step.
#pragma once

#include <cstdint>

#include "cellrt/types.h"

namespace cellrt {

// k(q, p) = exp(-|q - p|^2 / (2 sigma^2)), the squared distance taken from
// the differences (not |q|^2 + |p|^2 - 2 q.p, which cancels for near
// points) and accumulated, like the sums, in float64.
//
// Args:
//   queries: (M, D) float32, C-contiguous, host or CUDA.
//   points:  (N, D) float32, C-contiguous, same device.
//   sigma:   kernel width, > 0 and finite.
//   out:     float64, same device, written: (M,) for out[i] = sum_j k(q_i, p_j)
//            (summed in ascending j on the host), or (M, N) for out[i, j] = k(q_i, p_j).
//   num_threads: CPU worker threads; 0 = all hardware threads.
//   stream: cudaStream_t for device arrays (asynchronous).
void rbf_kernel(const TensorView& queries, const TensorView& points, double sigma, const TensorView& out,
                int32_t num_threads = 0, void* stream = nullptr);

}  // namespace cellrt
