// Argument checks shared by the op dispatchers (stitch.cpp, tile.cpp).
#pragma once

#include <cstdint>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "cellrt/types.h"
#include "core/check.h"

namespace cellrt::detail {

inline std::string shape_string(const TensorView& v) {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < v.ndim; ++i) os << (i ? ", " : "") << v.shape[i];
  os << (v.ndim == 1 ? ",)" : ")");
  return os.str();
}

inline const char* device_name(Device d) { return d == Device::kCUDA ? "cuda" : "cpu"; }

// The number of elements of v, refused when an extent is negative or when
// the bytes they span would overflow int64: a wrapped product slipped under
// the ops' own pixel limits, and a 2^40 x 2^40 view, its sides cast to int32,
// ran as an empty image and returned OK.
inline int64_t element_count(const char* op, const char* name, const TensorView& v) {
  bool empty = false;
  for (int i = 0; i < v.ndim; ++i) {
    CELLRT_CHECK(v.shape[i] >= 0, op, ": ", name, " has a negative extent ", shape_string(v));
    empty = empty || v.shape[i] == 0;
  }
  if (empty) return 0;
  const int64_t size = dtype_size(v.dtype) > 0 ? dtype_size(v.dtype) : 1;
  int64_t n = 1;
  for (int i = 0; i < v.ndim; ++i) {
    CELLRT_CHECK(n <= std::numeric_limits<int64_t>::max() / size / v.shape[i], op, ": ", name,
                 " should span fewer than 2^63 bytes, got shape ", shape_string(v));
    n *= v.shape[i];
  }
  return n;
}

inline void check_view(const char* op, const char* name, const TensorView& v, int ndim,
                       const char* shape_doc, bool need_contiguous) {
  CELLRT_CHECK(v.ndim == ndim, op, ": ", name, " should have shape ", shape_doc, ", got ",
               shape_string(v));
  element_count(op, name, v);
  CELLRT_CHECK(!need_contiguous || is_contiguous(v), op, ": ", name,
               " should be C-contiguous, got strides that are not");
}

// The bytes [first, last) a non-empty view's elements span (strides may be
// negative or zero); {0, 0} for an empty view. Call after element_count().
inline void byte_range(const TensorView& v, uintptr_t& first, uintptr_t& last) {
  first = last = 0;
  int64_t low = 0, high = 0;
  for (int i = 0; i < v.ndim; ++i) {
    if (v.shape[i] == 0) return;
    const int64_t reach = (v.shape[i] - 1) * v.strides[i];
    (reach < 0 ? low : high) += reach;
  }
  const int64_t size = dtype_size(v.dtype) > 0 ? dtype_size(v.dtype) : 1;
  const auto base = reinterpret_cast<uintptr_t>(v.data);
  first = base + static_cast<uintptr_t>(low * size);   // low <= 0: wraps to base - |low| x size
  last = base + static_cast<uintptr_t>((high + 1) * size);
}

// Refuses an output whose bytes overlap an input's unless it is the input
// itself, element for element (same buffer, shape, strides and type), where
// `in_place` allows that: a kernel reading pixels its own output has already
// replaced gives a silently wrong image.
inline void check_no_overlap(const char* op, const char* in_name, const TensorView& in, const char* out_name,
                             const TensorView& out, bool in_place) {
  uintptr_t in_first, in_last, out_first, out_last;
  byte_range(in, in_first, in_last);
  byte_range(out, out_first, out_last);
  if (in_first == in_last || out_first == out_last) return;
  if (in_last <= out_first || out_last <= in_first) return;
  bool same = in.data == out.data && in.dtype == out.dtype && in.ndim == out.ndim;
  for (int i = 0; same && i < in.ndim; ++i) same = in.shape[i] == out.shape[i] && in.strides[i] == out.strides[i];
  CELLRT_CHECK(in_place && same, op, ": ", out_name, " should not overlap ", in_name,
               in_place ? " other than being it (in place)" : "", ": the kernel would read values it has "
               "already replaced");
}

// A 2-D view whose sides the kernels hold as int32 (rows addressed in int64,
// so the pixel count may exceed it).
inline void check_int32_sides(const char* op, const char* name, const TensorView& v) {
  CELLRT_CHECK(v.shape[0] < (int64_t{1} << 31) && v.shape[1] < (int64_t{1} << 31), op, ": ", name,
               "' sides should be below 2^31, got ", shape_string(v));
}

// Image and tile sides stay far enough below INT32_MAX that the int32
// arithmetic of the kernels (origin + tile, 2 * position) cannot overflow.
inline void check_sides(const char* op, int64_t h, int64_t w, int64_t th, int64_t tw) {
  constexpr int64_t kMaxSide = std::numeric_limits<int32_t>::max() / 4;
  CELLRT_CHECK(h < kMaxSide && w < kMaxSide && th < kMaxSide && tw < kMaxSide, op,
               ": image and tile sides should be below ", kMaxSide, ", got image ", h, " x ", w, " and tile ",
               th, " x ", tw);
}

inline void check_same_device(const char* op, const char* a_name, const TensorView& a, const char* b_name,
                              const TensorView& b) {
  CELLRT_CHECK(a.device == b.device, op, ": ", a_name, " and ", b_name, " should be on one device, got ",
               device_name(a.device), " and ", device_name(b.device));
}

// Two (H, W) views (check_view first) of one shape: "<op>: <b> should have
// the <a>'s shape (...), got (...)" ("labels'" for a name ending in s).
inline void check_same_shape_2d(const char* op, const char* a_name, const TensorView& a, const char* b_name,
                                const TensorView& b) {
  if (a.shape[0] == b.shape[0] && a.shape[1] == b.shape[1]) return;
  const std::string owner(a_name);
  throw std::invalid_argument(concat(op, ": ", b_name, " should have the ", owner,
                                     owner.back() == 's' ? "'" : "'s", " shape ", shape_string(a), ", got ",
                                     shape_string(b)));
}

// origins: [n, 2] (y, x), each inside the h x w image.
inline void check_origins(const char* op, const int64_t* origins, int64_t n, int64_t h, int64_t w) {
  CELLRT_CHECK(n == 0 || origins != nullptr, op, ": origins should not be null for ", n, " tiles");
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y = origins[2 * k], x = origins[2 * k + 1];
    CELLRT_CHECK(y >= 0 && y < h && x >= 0 && x < w, op, ": origins[", k, "] = (", y, ", ", x,
                 ") should lie inside the ", h, " x ", w, " image");
  }
}

}  // namespace cellrt::detail
