/* A device buffer that grows on demand: the prefill GEMMs' scratch
 * (gemm.cu, gemm_wgmma.cu). Process-wide, not thread-safe. */
#ifndef G4_CUDA_SCRATCH_CUH
#define G4_CUDA_SCRATCH_CUH

#include <cuda_runtime.h>
#include <stdio.h>

struct g4k_scratch {
    void *p;
    size_t cap;
};

/* Grows b to at least `bytes` (who: for the error message). The stream is
 * synchronized first so that no queued kernel still uses the old buffer, so a
 * call that grows it cannot be graph-captured. Returns 0, or -1 with b empty. */
static inline int g4k_scratch_grow(g4k_scratch *b, size_t bytes, cudaStream_t s, const char *who) {
    if (bytes <= b->cap) return 0;
    cudaError_t e = cudaStreamSynchronize(s);
    if (e == cudaSuccess && b->p) e = cudaFree(b->p);
    b->p = nullptr, b->cap = 0;
    if (e == cudaSuccess) e = cudaMalloc(&b->p, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: scratch of %zu bytes: %s\n", who, bytes, cudaGetErrorString(e));
        b->p = nullptr;
        return -1;
    }
    b->cap = bytes;
    return 0;
}

/* Frees b (after the device is idle: a queued kernel may still use it). */
static inline void g4k_scratch_free(g4k_scratch *b) {
    if (b->p) cudaFree(b->p);
    b->p = nullptr, b->cap = 0;
}

#endif
