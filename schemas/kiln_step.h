// KilnStep: the 64-byte per-step control block at Plan.arena.step_offset
// (docs/plan-abi.md). Declared once, here: the runtime includes it as C++, and
// NVRTC gets this very file as the header "kiln_step.h" (kernels #include it),
// so host and device cannot disagree on a field. Everything that changes per
// step lives here, which is why a captured CUDA graph replays unpatched.
//
// Only 32/64-bit scalar types that mean the same on the host and in NVRTC
// (int, unsigned, float, unsigned long long): no <cstdint> under NVRTC.
#pragma once

namespace kiln {

struct KilnStep {
  int n_tokens;                  // real tokens this step (<= the program's bucket)
  int pos0;                      // position of token 0
  float temperature;             // <= 0: greedy
  int top_k;                     // <= 0: off
  float top_p;                   // >= 1: off
  unsigned seed_lo, seed_hi;     // sampling seed
  unsigned step;                 // counter mixed into the sampling RNG
  int out_token;                 // written by the sampling kernel
  unsigned sample_done;          // sampling blocks finished (0 between launches)
  unsigned long long greedy_key; // parallel greedy: max of (value key << 32 | ~index) (0 between launches)
  // Format 2.3, programs with Program.device_step: when ring > 0 (a power of
  // two), the sampling kernel's last block also stores the token to
  // host_tokens[step & (ring - 1)] (mapped host memory) and advances this
  // block to the next decode step: pos0 += n_tokens, n_tokens = 1, step += 1.
  // The host then replays the decode graph without copying a block in or
  // the token out. 0: neither (the kernel leaves the block as it was).
  unsigned ring;
  int reserved;                  // 0
  unsigned long long host_tokens; // device address of int[ring] (ring > 0)
};

}  // namespace kiln

// Every field's offset is part of the plan ABI. The host checks each one here;
// NVRTC has no constant offsetof, so on the device side the size is checked
// here and every field's offset by the codegen test that compiles a kernel
// storing to each field and reads the byte offsets back from its PTX
// (tests/codegen/families_test.cpp, KilnStepLayoutAgreesOnDevice).
static_assert(sizeof(kiln::KilnStep) == 64, "KilnStep is 64 bytes (plan ABI)");
#ifndef __CUDACC_RTC__
#include <cstddef>
#define KILN_STEP_OFFSETOF(f) offsetof(kiln::KilnStep, f)  // host code: byte offset of a field
static_assert(offsetof(kiln::KilnStep, n_tokens) == 0, "KilnStep.n_tokens at byte 0");
static_assert(offsetof(kiln::KilnStep, pos0) == 4, "KilnStep.pos0 at byte 4");
static_assert(offsetof(kiln::KilnStep, temperature) == 8, "KilnStep.temperature at byte 8");
static_assert(offsetof(kiln::KilnStep, top_k) == 12, "KilnStep.top_k at byte 12");
static_assert(offsetof(kiln::KilnStep, top_p) == 16, "KilnStep.top_p at byte 16");
static_assert(offsetof(kiln::KilnStep, seed_lo) == 20, "KilnStep.seed_lo at byte 20");
static_assert(offsetof(kiln::KilnStep, seed_hi) == 24, "KilnStep.seed_hi at byte 24");
static_assert(offsetof(kiln::KilnStep, step) == 28, "KilnStep.step at byte 28");
static_assert(offsetof(kiln::KilnStep, out_token) == 32, "KilnStep.out_token at byte 32");
static_assert(offsetof(kiln::KilnStep, sample_done) == 36, "KilnStep.sample_done at byte 36");
static_assert(offsetof(kiln::KilnStep, greedy_key) == 40, "KilnStep.greedy_key at byte 40 (8-aligned for 64-bit atomics)");
static_assert(offsetof(kiln::KilnStep, ring) == 48, "KilnStep.ring at byte 48");
static_assert(offsetof(kiln::KilnStep, reserved) == 52, "KilnStep.reserved at byte 52");
static_assert(offsetof(kiln::KilnStep, host_tokens) == 56, "KilnStep.host_tokens at byte 56 (8-aligned)");
#endif
