/* Shared by the CUDA kernel checks (gemm_check, gemv_check, w8a8_check,
 * attention_check): a CUDA error stops the program with where it happened, a
 * seeded xorshift64* stream gives the same random data on every run, and the
 * host decodes E4M3 and BF16 exactly. Define CHECK_SEED before including it. */
#ifndef G4_TESTS_GPU_CHECK_CUH
#define G4_TESTS_GPU_CHECK_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(call)                                                                                     \
    do {                                                                                             \
        cudaError_t e_ = (call);                                                                     \
        if (e_ != cudaSuccess) {                                                                     \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
            exit(2);                                                                                 \
        }                                                                                            \
    } while (0)

static uint64_t g_rng = CHECK_SEED;
static uint64_t rnd() { /* xorshift64* */
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}

static inline double urand() { return (rnd() >> 11) * (1.0 / 9007199254740992.0); } /* [0, 1) */

/* An E4M3 code's value (0x7F/0xFF, the NaNs, are never generated). */
static inline double e4m3(uint8_t c) {
    const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    const double v = e == 0 ? m / 8.0 * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
    return s ? -v : v;
}

static inline double bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif
