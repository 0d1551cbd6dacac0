/* The bandwidth ceiling, re-measured in the same run as any figure reported
 * against it (performance.md §5): a streaming read of a large buffer. */
#include <stdlib.h>

#include "cuda/common.cuh"
#include "cuda/cuda_backend.h"

__global__ void read_kernel(const uint4 *p, size_t n, unsigned *sink) {
    uint32_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = g4k_ld_stream(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc; /* keeps the loads alive */
}

__global__ void fill_kernel(uint32_t *p, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = (uint32_t)(i * 2654435761u) | 1u; /* never zeros */
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

extern "C" double g4_cuda_read_bandwidth(uint64_t bytes, int reps, g4_err *err) {
    void *buf = nullptr;
    unsigned *sink = nullptr;
    if (cudaMalloc(&buf, bytes) != cudaSuccess || cudaMalloc(&sink, 4) != cudaSuccess) {
        g4_errorf(err, "CUDA: cannot allocate %.1f GB for the bandwidth test", bytes / 1e9);
        return -1;
    }
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    fill_kernel<<<sms * 8, 256>>>(static_cast<uint32_t *>(buf), bytes / 4);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    float *ms = static_cast<float *>(malloc(sizeof(float) * reps));
    for (int r = 0; r <= reps; r++) { /* the first run warms up */
        cudaEventRecord(a);
        read_kernel<<<sms * 8, 512>>>(static_cast<const uint4 *>(buf), bytes / 16, sink);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        if (r) cudaEventElapsedTime(&ms[r - 1], a, b);
    }
    qsort(ms, reps, sizeof(float), cmp_float);
    const double gbs = bytes / (ms[reps / 2] * 1e-3) / 1e9;
    free(ms);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaFree(buf);
    cudaFree(sink);
    return gbs;
}

extern "C" const char *g4_cuda_device_name(void) {
    static cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return "no GPU";
    return prop.name;
}
