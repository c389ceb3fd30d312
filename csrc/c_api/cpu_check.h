// The C ABI's check that this CPU can run the code cellrt_core was compiled
// for. cpu_check.cpp is compiled for baseline x86-64 (see CMakeLists.txt), so
// the check itself runs anywhere.
#pragma once

namespace cellrt::c_abi {

// nullptr when this CPU can run the library, else a message saying what it
// lacks and how to rebuild. Decided on the first call, then cached.
const char* unsupported_cpu() noexcept;

}  // namespace cellrt::c_abi
