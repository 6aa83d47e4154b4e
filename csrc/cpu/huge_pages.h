// Large CPU outputs on transparent huge pages, opt-in (GANCORE_HUGE_PAGES=1).
//
// Under glibc's defaults a tensor above the mmap threshold (at most 32 MiB) is a fresh mapping, and its
// first write takes a page fault per 4 KiB page: about 12 ms of a 32 MiB output on the development machine,
// several times the kernel's own time. Advised with MADV_HUGEPAGE before that first write, the mapping
// faults once per 2 MiB instead. Memory that is already resident (reused by the allocator) is left alone:
// its faults were paid before. Off by default: an op alone gets 2-3x faster, but whole training steps did
// not (StarGAN 128x128: 4% slower, CycleGAN 256: within noise), as a 2 MiB page is zeroed in one go,
// out of the cache before the kernel writes it, where a 4 KiB page is zeroed just before its use.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace gancore {

constexpr std::uintptr_t kHugePage = std::uintptr_t(2) << 20;
constexpr std::size_t kHugePageMinBytes = std::size_t(8) << 20;  // at least 3 whole huge pages inside

inline bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("GANCORE_HUGE_PAGES");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return enabled;
}

// Advise the whole 2 MiB pages inside [data, data + nbytes) when they are not resident yet. Best effort:
// a failing mincore or madvise (no THP in this kernel) changes nothing but the speed.
inline void advise_huge_pages(void* data, std::size_t nbytes) {
#ifdef __linux__
  if (nbytes < kHugePageMinBytes || !huge_pages_enabled()) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t start = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t end = (begin + nbytes) & ~(kHugePage - 1);
  if (end <= start) return;
  unsigned char resident = 0;
  if (mincore(reinterpret_cast<void*>(start), 1, &resident) != 0 || (resident & 1)) return;
  madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
#else
  (void)data;
  (void)nbytes;
#endif
}

// at::empty_like(x) for an output the kernel writes in full.
inline at::Tensor empty_output_like(const at::Tensor& x) {
  at::Tensor out = at::empty_like(x);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  return out;
}

}  // namespace gancore
