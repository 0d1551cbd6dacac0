/* Shared by the two prefill GEMMs (gemm.cu, gemm_wgmma.cu): their growing
 * scratch buffers and the split-K reduction. */
#ifndef G4_CUDA_GEMM_COMMON_CUH
#define G4_CUDA_GEMM_COMMON_CUH

#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda/common.cuh"

/* A device buffer that grows on demand. Process-wide, not thread-safe. */
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

/* y[m][r] = sum_s ws[s][m][r] (plain), or gelu(sum gate) * sum up with up at
 * column N + r (GeGLU); partial sums `stride` floats apart, rows ldw apart. */
static __global__ void splitk_reduce(float *y, const float *ws, int M, int N, int ldw, int splits, size_t stride,
                                     int geglu) {
    g4k_wait_inputs(); /* a no-op unless launched with programmatic dependent launch */
    const size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t m = i / N, r = i % N;
        float a = 0.0f, b = 0.0f;
        for (int s = 0; s < splits; s++) {
            a += ws[s * stride + m * ldw + r];
            if (geglu) b += ws[s * stride + m * ldw + N + r];
        }
        y[i] = geglu ? g4k_gelu_tanh(a) * b : a;
    }
}

#endif
