// Run-time choice of the instruction set for the CPU kernels, shared by every op.
// Each op compiles its kernels twice (AVX2+FMA under `#pragma GCC target`, and the baseline ISA).
#pragma once

#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define GANCORE_X86_MULTIVERSION 1
#endif

namespace gancore {

// AVX2+FMA where the CPU has it, unless GANCORE_CPU_ISA=baseline asks for the portable build
// (tests run both).
inline bool cpu_use_avx2() {
#ifdef GANCORE_X86_MULTIVERSION
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* forced = std::getenv("GANCORE_CPU_ISA");
  if (forced != nullptr && std::strcmp(forced, "baseline") == 0) return false;
  return supported;
#else
  return false;
#endif
}

}  // namespace gancore
