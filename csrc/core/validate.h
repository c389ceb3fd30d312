// Argument checks shared by the op dispatchers (stitch.cpp, tile.cpp).
#pragma once

#include <sstream>
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

inline void check_view(const char* op, const char* name, const TensorView& v, int ndim,
                       const char* shape_doc, bool need_contiguous) {
  CELLRT_CHECK(v.ndim == ndim, op, ": ", name, " should have shape ", shape_doc, ", got ",
               shape_string(v));
  for (int i = 0; i < ndim; ++i)
    CELLRT_CHECK(v.shape[i] >= 0, op, ": ", name, " has a negative extent ", shape_string(v));
  CELLRT_CHECK(!need_contiguous || is_contiguous(v), op, ": ", name,
               " should be C-contiguous, got strides that are not");
}

}  // namespace cellrt::detail
