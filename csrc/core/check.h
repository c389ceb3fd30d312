// CELLRT_CHECK(cond, parts...) throws std::invalid_argument with a message
// assembled from its parts, so every argument error has the same shape:
// "<op>: <argument> should be <expected>, got <found>". pybind11 turns it
// into ValueError; the C ABI turns it into CELLRT_STATUS_INVALID_ARGUMENT.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

#include "cellrt/types.h"  // NotCompiledError

namespace cellrt {

namespace detail {
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail
}  // namespace cellrt

#define CELLRT_CHECK(cond, ...)                                        \
  do {                                                                 \
    if (!(cond)) {                                                     \
      throw std::invalid_argument(::cellrt::detail::concat(__VA_ARGS__)); \
    }                                                                  \
  } while (0)
