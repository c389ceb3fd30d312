// The Ops of label_measure_kernel.h on the device: CUDA atomics, so the
// bodies the host runs one at a time run concurrently here.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace cellrt::detail {

struct DeviceAtomics {
  __device__ static void add(unsigned long long* address, unsigned long long value) { atomicAdd(address, value); }
  __device__ static void add(int32_t* address, int32_t value) { atomicAdd(address, value); }
  __device__ static void add(double* address, double value) { atomicAdd(address, value); }
  __device__ static void min(int32_t* address, int32_t value) { atomicMin(address, value); }
  __device__ static void max(int32_t* address, int32_t value) { atomicMax(address, value); }
  __device__ static int32_t link(int32_t* address, int32_t value) { return atomicMin(address, value); }

  // No float atomicMin/Max in CUDA: compare-and-swap on the bits, retried
  // while the stored value is still beaten (NaN never is, as on the host).
  __device__ static void min(float* address, float value) {
    auto* bits = reinterpret_cast<unsigned int*>(address);
    unsigned int old = *bits;
    while (value < __uint_as_float(old)) {
      const unsigned int assumed = old;
      old = atomicCAS(bits, assumed, __float_as_uint(value));
      if (old == assumed) break;
    }
  }
  __device__ static void max(float* address, float value) {
    auto* bits = reinterpret_cast<unsigned int*>(address);
    unsigned int old = *bits;
    while (value > __uint_as_float(old)) {
      const unsigned int assumed = old;
      old = atomicCAS(bits, assumed, __float_as_uint(value));
      if (old == assumed) break;
    }
  }
};

}  // namespace cellrt::detail
