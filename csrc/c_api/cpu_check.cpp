// cellrt_core is compiled for x86-64-v3 (CELLRT_X86_64_V3=ON, the default):
// on an older CPU its first AVX2 instruction kills the calling process with
// SIGILL. The Python module refuses to import there (csrc/python/module.cpp);
// C callers get CELLRT_STATUS_NOT_COMPILED and this message from every call
// instead. Only libc and libgcc are used here, both built for any x86-64.
#include "c_api/cpu_check.h"

#include <cstdlib>
#include <cstring>

namespace cellrt::c_abi {

#if defined(CELLRT_X86_64_V3) && CELLRT_X86_64_V3 && defined(__x86_64__)

namespace {

#define CELLRT_LACKS_V3                                                                                   \
  "libcellrt_c was compiled for x86-64-v3 (AVX2, FMA, F16C: Intel Haswell, AMD Zen and newer) but this CPU " \
  "lacks it; rebuild cellrt with -DCELLRT_X86_64_V3=OFF (pip: -C cmake.define.CELLRT_X86_64_V3=OFF)"

constexpr const char kLacksV3[] = CELLRT_LACKS_V3;
// The same refusal on a CPU that has x86-64-v3, for tests of callers' error
// paths (and of this one): CELLRT_TEST_CPU_LACKS_X86_64_V3=1.
constexpr const char kPretended[] = CELLRT_LACKS_V3 " [pretended: CELLRT_TEST_CPU_LACKS_X86_64_V3 is set]";

const char* decide() noexcept {
  const char* pretend = std::getenv("CELLRT_TEST_CPU_LACKS_X86_64_V3");
  if (pretend != nullptr && pretend[0] != '\0' && std::strcmp(pretend, "0") != 0) return kPretended;
  __builtin_cpu_init();  // a no-op when libgcc's constructor already ran
  return __builtin_cpu_supports("x86-64-v3") ? nullptr : kLacksV3;
}

}  // namespace

const char* unsupported_cpu() noexcept {
  static const char* const reason = decide();
  return reason;
}

#else

const char* unsupported_cpu() noexcept { return nullptr; }

#endif

}  // namespace cellrt::c_abi
