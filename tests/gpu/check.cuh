/* Shared by the CUDA kernel checks (gemm_check, w8a8_check, attention_check):
 * a CUDA error stops the program with where it happened, and a seeded
 * xorshift64* stream gives the same random data on every run. Define
 * CHECK_SEED before including it. */
#ifndef G4_TESTS_GPU_CHECK_CUH
#define G4_TESTS_GPU_CHECK_CUH

#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
