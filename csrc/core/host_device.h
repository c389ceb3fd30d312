// CELLRT_HOST_DEVICE marks the per-element math that both the host compiler
// and nvcc compile, so the CPU backend exercises the very kernel bodies the
// CUDA backend runs (torchvision box_iou_rotated_utils.h does the same).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define CELLRT_HOST_DEVICE __host__ __device__
#define CELLRT_ON_DEVICE_COMPILER 1
#else
#define CELLRT_HOST_DEVICE
#define CELLRT_ON_DEVICE_COMPILER 0
#endif

// True only inside the device pass of nvcc, where intrinsics such as
// __half2float exist.
#if defined(__CUDA_ARCH__)
#define CELLRT_DEVICE_PASS 1
#else
#define CELLRT_DEVICE_PASS 0
#endif
