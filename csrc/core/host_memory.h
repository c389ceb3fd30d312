// Host-only memory helpers of the CPU kernels: software prefetch, and
// non-temporal (streaming) stores for their large outputs.
//
// Streaming stores: A regular store first reads the destination line into cache
// (read-for-ownership), so writing N bytes moves 2N; a streaming store
// writes around the cache and moves N. For outputs far larger than the
// cache (tiles, fields) this is the difference between ~1.5x and ~1x of
// the memory-bandwidth bound. Callers issue store_fence() before their
// results are read by another thread.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/half.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace cellrt::detail {

// Requests the n elements at p ahead of their use, for access patterns the
// hardware prefetchers do not follow (many interleaved streams, or a new
// page on every row). Into every cache level (prefetcht0): with
// non-temporal prefetches a stitch reading its tiles from memory took up to
// 20% longer (1x2048^2 float32; 3-12% with 3 channels) - presumably lines
// fetched four rows ahead left the cache again before their use.
template <typename T>
inline void prefetch_run(const T* p, int64_t n) {
#if defined(__GNUC__)
  const char* bytes = reinterpret_cast<const char*>(p);
  for (int64_t b = 0; b < n * static_cast<int64_t>(sizeof(T)); b += 64) __builtin_prefetch(bytes + b, 0, 3);
#endif
}

inline void store_fence() {
#if defined(__AVX__)
  _mm_sfence();
#endif
}

#if defined(__AVX__)
// One float with a streaming store. The few values before and after a run's
// 32-byte-aligned middle go this way too: a cache line written partly with
// regular stores and partly with streaming ones - neighbouring stitch spans
// meeting mid-line when the output is not line-aligned - is pushed out of
// the cache and written twice; such outputs stitched up to 4x slower.
inline void stream_store(float* dst, float value) {
  int bits;
  std::memcpy(&bits, &value, sizeof bits);
  _mm_stream_si32(reinterpret_cast<int*>(dst), bits);
}
#endif

// dst[0:n] = src[0:n]. A run starting or ending 16 bytes off a 32-byte
// boundary - every run into a numpy array, which starts 16 bytes past a
// cache line - takes one 16-byte streaming store there, not four 4-byte
// ones: the stitch into such an output took 6-9% longer than into an
// aligned one that way.
inline void stream_copy(float* dst, const float* src, int64_t n) {
#if defined(__AVX__)
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15u) != 0; ++i) stream_store(dst + i, src[i]);
  if (i + 4 <= n && (reinterpret_cast<uintptr_t>(dst + i) & 31u) != 0) {
    _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    i += 4;
  }
  for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
  if (i + 4 <= n) {
    _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
    i += 4;
  }
  for (; i < n; ++i) stream_store(dst + i, src[i]);
#else
  std::memcpy(dst, src, sizeof(float) * n);
#endif
}

// dst[0:n] = src[0:n] for float16 values already converted.
inline void stream_copy(Half* dst, const Half* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX__)
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15u) != 0; ++i) dst[i] = src[i];
  if (i + 8 <= n && (reinterpret_cast<uintptr_t>(dst + i) & 31u) != 0) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    i += 8;
  }
  for (; i + 16 <= n; i += 16)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
  for (; i + 8 <= n; i += 8)
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
#endif
  if (i < n) std::memcpy(dst + i, src + i, sizeof(Half) * (n - i));
}

// dst[0:n] = float16(src[0:n]), round to nearest even.
inline void stream_copy(Half* dst, const float* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX__) && defined(__F16C__)
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15u) != 0; ++i) dst[i] = to_half(src[i]);
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
#endif
  for (; i < n; ++i) dst[i] = to_half(src[i]);
}

}  // namespace cellrt::detail
