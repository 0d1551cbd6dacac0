/* GEMV rate against shape (a benchmark, not a test): is the FP8 decode GEMV's
 * throughput a property of the kernel's inner loop or of the launch size?
 * For several [rows, cols] (FP8, one token), times g4k_gemv with events
 * (median of 50 after 5 warm-ups) and as 20 launches captured in one CUDA graph
 * (per-launch time without host launch cost), and prints GB/s of weights read.
 * Build: make build/tests/gpu/gemv_bench; run on the GPU machine. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <vector>

#include "cuda/kernels.h"

#define CK(x)                                                                   \
    do {                                                                        \
        cudaError_t e_ = (x);                                                   \
        if (e_ != cudaSuccess) {                                                \
            fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

__global__ void fill_codes(uint8_t *w, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        uint8_t c = (uint8_t)(h & 0xff);
        if ((c & 0x7f) == 0x7f || (c & 0x7f) == 0) c = 0x38; /* no NaN, no zero */
        w[i] = c;
    }
}

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main() {
    const int shapes[][2] = {{512, 3840},   {2048, 3840},  {4096, 3840},  {8192, 3840},  {15360, 3840},
                             {30720, 3840}, {65536, 3840}, {131072, 3840}, {3840, 4096}, {3840, 15360},
                             {15360, 15360}};
    cudaStream_t s;
    CK(cudaStreamCreate(&s));

    printf("%8s %7s %9s %11s %11s %10s %10s\n", "rows", "cols", "MB", "event_us", "graph_us", "GB/s_ev", "GB/s_graph");
    for (const auto &sh : shapes) {
        const int rows = sh[0], cols = sh[1];
        const size_t n = (size_t)rows * cols, nsc = (size_t)((rows + 127) / 128) * ((cols + 127) / 128);
        uint8_t *w;
        float *sc, *x, *y;
        CK(cudaMalloc(&w, n));
        CK(cudaMalloc(&sc, nsc * 4));
        CK(cudaMalloc(&x, cols * 4));
        CK(cudaMalloc(&y, rows * 4));
        fill_codes<<<1024, 256>>>(w, n, 7);
        std::vector<float> hs(nsc, 0.01f), hx(cols, 0.5f);
        CK(cudaMemcpy(sc, hs.data(), nsc * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(x, hx.data(), cols * 4, cudaMemcpyHostToDevice));
        g4_dmatrix m = {1, rows, cols, w, sc};
        float *ys[1] = {y};
        cudaEvent_t a, b;
        cudaEventCreate(&a), cudaEventCreate(&b);
        for (int i = 0; i < 5; i++) g4k_gemv(&m, ys, 1, x, 1, s);
        std::vector<float> t;
        for (int i = 0; i < 50; i++) {
            cudaEventRecord(a, s);
            g4k_gemv(&m, ys, 1, x, 1, s);
            cudaEventRecord(b, s);
            CK(cudaEventSynchronize(b));
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            t.push_back(ms);
        }
        cudaGraph_t g;
        cudaGraphExec_t ge;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < 20; i++) g4k_gemv(&m, ys, 1, x, 1, s);
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        CK(cudaGraphLaunch(ge, s));
        std::vector<float> tg;
        for (int i = 0; i < 10; i++) {
            cudaEventRecord(a, s);
            CK(cudaGraphLaunch(ge, s));
            cudaEventRecord(b, s);
            CK(cudaEventSynchronize(b));
            float ms;
            cudaEventElapsedTime(&ms, a, b);
            tg.push_back(ms / 20);
        }
        CK(cudaGetLastError());
        const float ev = median(t) * 1e3f, gr = median(tg) * 1e3f;
        printf("%8d %7d %9.1f %11.1f %11.1f %10.0f %10.0f\n", rows, cols, n / 1e6, ev, gr, n / (ev * 1e3), n / (gr * 1e3));
        cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaEventDestroy(a), cudaEventDestroy(b);
        cudaFree(w), cudaFree(sc), cudaFree(x), cudaFree(y);
    }
    return 0;
}
