/* Decode GEMV throughput on the 12B's shapes (a benchmark, not a test): each
 * projection of a decode step (one token) through its entry point, as 20
 * launches captured in one CUDA graph (per-launch time without host launch
 * cost; back to back, as in the step, with PDL), median of 10 replays, in
 * GB/s of weights read; then the step's projections summed over 40 sliding +
 * 8 full layers + the LM head, against a streaming read of 1 GB measured in
 * the same run (the bandwidth floor); then the same chained in step order in
 * one graph, with and without the 96 one-block residual norms between them,
 * and the norms chained alone. FP8 matrices are tiled as g4 uploads
 * them (kernels.h); G4_WEIGHT_LAYOUT=rows keeps them row-major, and with it
 * G4_GEMV=simt times the CUDA-core kernels. FP8 codes are random (never zero).
 * `--sweep` first times gate/up and down over a range of row counts,
 * `--sm-read` a streaming read over fewer SMs (see those functions).
 * Build: make build/tests/gpu/gemv_bench; run on the GPU machine. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

#define CHECK_SEED 0x853c49e6748fea9bull
#include "check.cuh"

__global__ void fill_codes(uint8_t *w, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        uint8_t c = (uint8_t)(h & 0xff);
        if ((c & 0x7f) == 0x7f || (c & 0x7f) == 0) c = 0x38; /* no NaN, no zero */
        w[i] = c;
    }
}

__global__ void read_kernel(const uint4 *p, size_t n, unsigned *sink) {
    uint32_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint4 v = g4k_ld_stream(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;
}

static g4_dmatrix make(int fp8, int rows, int cols, uint32_t seed) {
    void *w;
    float *sc = nullptr;
    const size_t bytes = (size_t)rows * cols * (fp8 ? 1 : 2);
    CK(cudaMalloc(&w, bytes));
    fill_codes<<<1024, 256>>>(static_cast<uint8_t *>(w), bytes, seed); /* BF16: bytes of FP8 codes, finite */
    const char *layout = getenv("G4_WEIGHT_LAYOUT");
    /* as g4 uploads them: FP8 layer matrices of whole tiles and K blocks, the BF16 embedding */
    const int tiled = rows % 16 == 0 && (fp8 ? cols % 128 : cols % 32) == 0 && !(layout && !strcmp(layout, "rows"));
    if (tiled) {
        void *t;
        CK(cudaMalloc(&t, bytes));
        g4k_retile(t, w, rows, cols * (fp8 ? 1 : 2), 0);
        CK(cudaDeviceSynchronize());
        CK(cudaFree(w));
        w = t;
    }
    if (fp8) {
        const size_t nsc = (size_t)((rows + 127) / 128) * ((cols + 127) / 128);
        std::vector<float> hs(nsc, 0.01f);
        CK(cudaMalloc(&sc, nsc * 4));
        CK(cudaMemcpy(sc, hs.data(), nsc * 4, cudaMemcpyHostToDevice));
    }
    return {fp8, rows, cols, w, sc, tiled};
}

static size_t bytes_of(const g4_dmatrix &m) { return (size_t)m.rows * m.cols * (m.fp8 ? 1 : 2); }

/* microseconds per call: `per_graph` calls in a graph, median of 10 replays */
static double time_us(cudaStream_t s, const std::function<void()> &call, int per_graph = 20) {
    for (int i = 0; i < 3; i++) call();
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < per_graph; i++) call();
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, s));
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    std::vector<float> t;
    for (int i = 0; i < 10; i++) {
        cudaEventRecord(a, s);
        CK(cudaGraphLaunch(ge, s));
        cudaEventRecord(b, s);
        CK(cudaEventSynchronize(b));
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        t.push_back(ms * 1e3f / per_graph);
    }
    CK(cudaGetLastError());
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaEventDestroy(a), cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/* A streaming read in which each thread keeps U 16-byte loads in flight;
 * launched with 160 KB of (unused) shared memory, so one block per SM. */
template <int U>
__global__ void __launch_bounds__(1024) read_sm_kernel(const uint4 *p, size_t n, unsigned *sink) {
    uint32_t acc = 0;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    for (; i + (U - 1) * stride < n; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++) v[u] = g4k_ld_stream(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) { /* the rest, so that every byte counted is read */
        const uint4 v = g4k_ld_stream(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;
}

/* --sm-read: a streaming read spread over n SMs (one block of 1024 threads
 * each), 64 or 128 KB in flight per SM: what one SM can pull when fewer SMs
 * share HBM, against which a GEMV's rate on a smaller grid is read. */
static void sm_read(cudaStream_t s, const void *buf, size_t bytes, unsigned *sink) {
    const int sms = g4k_sm_count(), smem = 160 * 1024;
    CK(cudaFuncSetAttribute(read_sm_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    CK(cudaFuncSetAttribute(read_sm_kernel<8>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    printf("\nstreaming read of %.0f MB over n SMs, one block of 1024 threads each\n", bytes / 1e6);
    const int ns[] = {8, 16, 33, 66, 99, 120, 132};
    for (int n : ns) {
        if (n > sms) continue;
        const uint4 *p = static_cast<const uint4 *>(buf);
        const double u4 = time_us(s, [&] { read_sm_kernel<4><<<n, 1024, smem, s>>>(p, bytes / 16, sink); }, 5);
        const double u8 = time_us(s, [&] { read_sm_kernel<8><<<n, 1024, smem, s>>>(p, bytes / 16, sink); }, 5);
        printf("%3d SMs: 64 KB in flight per SM %6.0f GB/s (%5.1f GB/s per SM); 128 KB %6.0f GB/s (%5.1f per SM)\n", n,
               bytes / (u4 * 1e3), bytes / (u4 * 1e3) / n, bytes / (u8 * 1e3), bytes / (u8 * 1e3) / n);
    }
}

/* --sweep: gate/up and down at row counts around the 12B's, so that the
 * block count (gate/up: 4 tiles of 16 rows a block at these sizes, down: one;
 * at most 2 blocks per SM) crosses twice the SM count: does a launch's time
 * follow its bytes, or the most blocks one SM holds? */
static void sweep(cudaStream_t s, double floor_gbs, const float *x, float *const *y) {
    const int H = 3840, F = 15360;
    printf("\nrows sweep (one launch, 20 in a graph): blocks = tiles / tiles per block\n");
    const int gu_rows[] = {14784, 15360, 15872, 16384, 16896, 17408};
    for (int r : gu_rows) {
        g4_dmatrix gate = make(1, r, H, 21), up = make(1, r, H, 22);
        const size_t bytes = bytes_of(gate) + bytes_of(up);
        const double us = time_us(s, [&] { g4k_gemv_geglu(&gate, &up, y[0], x, 1, s); });
        printf("gate/up rows %5d (%3d blocks) %7.1f MB %8.2f us %5.0f GB/s (%4.1f %% of the read)\n", r, r / 16 / 4,
               bytes / 1e6, us, bytes / (us * 1e3), 100.0 * bytes / (us * 1e3) / floor_gbs);
        cudaFree((void *)gate.data), cudaFree((void *)up.data), cudaFree((void *)gate.scales), cudaFree((void *)up.scales);
    }
    const int down_rows[] = {3360, 3520, 3712, 3840, 3968, 4224, 4352};
    for (int r : down_rows) {
        g4_dmatrix down = make(1, r, F, 23);
        const size_t bytes = bytes_of(down);
        const double us = time_us(s, [&] { g4k_gemv_split(&down, y, 1, x, 1, 4, s); });
        printf("down rows %5d (%3d blocks) %7.1f MB %8.2f us %5.0f GB/s (%4.1f %% of the read)\n", r, r / 16,
               bytes / 1e6, us, bytes / (us * 1e3), 100.0 * bytes / (us * 1e3) / floor_gbs);
        cudaFree((void *)down.data), cudaFree((void *)down.scales);
    }
}

int main(int argc, char **argv) {
    const bool do_sweep = argc > 1 && !strcmp(argv[1], "--sweep");
    const bool do_sm_read = argc > 1 && !strcmp(argv[1], "--sm-read");
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    const char *path = getenv("G4_GEMV");
    const char *layout = getenv("G4_WEIGHT_LAYOUT");
    printf("kernels: %s; FP8 weights %s\n", path && !strcmp(path, "simt") ? "CUDA cores where row-major (G4_GEMV=simt)" : "tensor cores",
           layout && !strcmp(layout, "rows") ? "row-major" : "tiled");

    const size_t rb = (size_t)1 << 30;
    void *rbuf;
    unsigned *sink;
    CK(cudaMalloc(&rbuf, rb));
    CK(cudaMalloc(&sink, 4));
    fill_codes<<<1024, 256>>>(static_cast<uint8_t *>(rbuf), rb, 1);
    const double read_us =
        time_us(s, [&] { read_kernel<<<g4k_sm_count() * 8, 512, 0, s>>>(static_cast<const uint4 *>(rbuf), rb / 16, sink); });
    const double floor_gbs = rb / (read_us * 1e3);
    printf("streaming read of 1 GB: %.1f us, %.0f GB/s\n", read_us, floor_gbs);
    if (do_sm_read) sm_read(s, rbuf, (size_t)256 << 20, sink);
    cudaFree(rbuf);

    const int H = 3840, F = 15360, V = 262144;
    g4_dmatrix qs = make(1, 4096, H, 2), ks = make(1, 2048, H, 3), vs = make(1, 2048, H, 4);
    g4_dmatrix qf = make(1, 8192, H, 5), kf = make(1, 512, H, 6);
    g4_dmatrix os = make(1, H, 4096, 7), of = make(1, H, 8192, 8);
    g4_dmatrix gate = make(1, F, H, 9), up = make(1, F, H, 10), down = make(1, H, F, 11);
    g4_dmatrix head = make(0, V, H, 12);
    float *x, *y[3];
    CK(cudaMalloc(&x, sizeof(float) * F));
    std::vector<float> hx(F);
    for (auto &v : hx) v = (float)((rnd() >> 40) * (1.0 / 16777216.0) - 0.5);
    CK(cudaMemcpy(x, hx.data(), sizeof(float) * F, cudaMemcpyHostToDevice));
    for (auto &p : y) CK(cudaMalloc(&p, sizeof(float) * V * 4));
    if (do_sweep) sweep(s, floor_gbs, x, y);

    struct row { const char *name; size_t bytes; double us; int count; };
    std::vector<row> rows;
    auto run = [&](const char *name, size_t bytes, int count, const std::function<void()> &call) {
        const double us = time_us(s, call);
        rows.push_back({name, bytes, us, count});
        printf("%-28s %8.1f MB %9.2f us %7.0f GB/s (%4.1f %% of the read)\n", name, bytes / 1e6, us, bytes / (us * 1e3),
               100.0 * bytes / (us * 1e3) / floor_gbs);
    };
    run("q/k/v sliding", bytes_of(qs) + bytes_of(ks) + bytes_of(vs), 40, [&] {
        const g4_dmatrix m[3] = {qs, ks, vs};
        g4k_gemv(m, y, 3, x, 1, s);
    });
    run("q/k full (k == v)", bytes_of(qf) + bytes_of(kf), 8, [&] {
        const g4_dmatrix m[2] = {qf, kf};
        g4k_gemv(m, y, 2, x, 1, s);
    });
    run("o sliding (split 4)", bytes_of(os), 40, [&] { g4k_gemv_split(&os, y, 1, x, 1, 4, s); });
    run("o full (split 4)", bytes_of(of), 8, [&] { g4k_gemv_split(&of, y, 1, x, 1, 4, s); });
    run("gate/up + GeGLU", bytes_of(gate) + bytes_of(up), 48, [&] { g4k_gemv_geglu(&gate, &up, y[0], x, 1, s); });
    run("down (split 4)", bytes_of(down), 48, [&] { g4k_gemv_split(&down, y, 1, x, 1, 4, s); });
    run("lm head BF16 + softcap", bytes_of(head), 1, [&] {
        g4k_lm_head(y[0], x, &head, 1, 30.0f, s);
    });
    /* the step's projections in their order, one graph: boundaries between different kernels;
     * with_norms: also the two one-block residual norms per layer that decode runs after o and down */
    float *h, *w_norm;
    CK(cudaMalloc(&h, sizeof(float) * H));
    CK(cudaMalloc(&w_norm, sizeof(float) * H));
    CK(cudaMemcpy(h, hx.data(), sizeof(float) * H, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(w_norm, hx.data() + H, sizeof(float) * H, cudaMemcpyHostToDevice));
    /* the residual step decode runs after o and down, over y's split-K parts */
    auto residual_norm = [&](int parts) { g4k_residual_norm(h, y[0], parts, w_norm, 1.0f, x, w_norm, 1, H, 1e-6f, s); };
    auto chain = [&](bool with_norms) {
        auto norm = [&](int parts) {
            if (with_norms) residual_norm(parts);
        };
        return time_us(s, [&] {
            for (int l = 0; l < 48; l++) {
                const bool full = l % 6 == 5;
                if (full) {
                    const g4_dmatrix m[2] = {qf, kf};
                    g4k_gemv(m, y, 2, x, 1, s);
                } else {
                    const g4_dmatrix m[3] = {qs, ks, vs};
                    g4k_gemv(m, y, 3, x, 1, s);
                }
                norm(g4k_gemv_split(full ? &of : &os, y, 1, x, 1, 4, s));
                g4k_gemv_geglu(&gate, &up, y[0], x, 1, s);
                norm(g4k_gemv_split(&down, y, 1, x, 1, 4, s));
            }
            g4k_lm_head(y[0], x, &head, 1, 30.0f, s);
        }, 1);
    };
    const double chain_us = chain(false), chain_norms_us = chain(true);
    /* the norms with nothing between them: what one costs when no weight traffic is in flight */
    const double norms_us = time_us(s, [&] {
        for (int l = 0; l < 96; l++) residual_norm(1);
    }, 1);
    double us = 0, bytes = 0;
    for (const row &r : rows) us += r.us * r.count, bytes += (double)r.bytes * r.count;
    printf("one step's projections: %.3f ms for %.2f GB = %.0f GB/s; the read would take %.3f ms (%.1f %%)\n", us / 1e3,
           bytes / 1e9, bytes / (us * 1e3), bytes / floor_gbs / 1e6, 100.0 * bytes / floor_gbs / 1e3 / us);
    printf("the same chained in step order (one graph): %.3f ms = %.0f GB/s (%.1f %% of the read)\n", chain_us / 1e3,
           bytes / (chain_us * 1e3), 100.0 * bytes / floor_gbs / 1e3 / chain_us);
    printf("chained with the 96 residual norms of a decode step: %.3f ms (%.2f us per norm)\n", chain_norms_us / 1e3,
           (chain_norms_us - chain_us) / 96);
    printf("the 96 residual norms alone, chained (one graph): %.2f us per norm\n", norms_us / 96);
    return 0;
}
