/* Decode GEMV at the 12B's shapes: the register-fed kernel (gemv.cu) against
 * the streaming one (gemv_stream.cu). A check and a benchmark: for each
 * shape, both kernels on the same random FP8 weights (realistic scale spread,
 * no zeros) must agree (max |diff| / max |y| <= 1e-5, exit 1 otherwise; the
 * two sum in different orders), then each is timed as 20 launches captured in
 * one CUDA graph (median of 10 replays), in GB/s of weights read. The last
 * rows time one decode layer's four projections (48 layers in one graph):
 * separate residual-norm kernels, norms fused into the shared-x GEMVs, and
 * all streaming GEMVs.
 * Build: make build/tests/gpu/gemv_bench; run on the GPU machine. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include <functional>
#include <vector>

#include "cuda/kernels.h"

#define CK(x)                                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));         \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

__global__ void fill_codes(uint8_t *w, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 0x85ebca6bu;
        h ^= h >> 13;
        uint8_t c = (uint8_t)(h & 0xff);
        if ((c & 0x7f) == 0x7f || (c & 0x7f) == 0) c = 0x38; /* no NaN, no zero */
        w[i] = c;
    }
}

static uint32_t rng = 12345;
static float frand() { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / (1 << 23) - 1.0f;
}

static float *dev_floats(size_t n, float lo, float hi) {
    std::vector<float> h(n);
    for (auto &v : h) v = lo + (hi - lo) * 0.5f * (frand() + 1.0f);
    float *d;
    CK(cudaMalloc(&d, n * 4));
    CK(cudaMemcpy(d, h.data(), n * 4, cudaMemcpyHostToDevice));
    return d;
}

static g4_dmatrix make_matrix(int rows, int cols, uint32_t seed) {
    const size_t n = (size_t)rows * cols, nsc = (size_t)((rows + 127) / 128) * ((cols + 127) / 128);
    uint8_t *w;
    CK(cudaMalloc(&w, n));
    fill_codes<<<1024, 256>>>(w, n, seed);
    /* scales spread over two decades, like a trained model's blocks */
    std::vector<float> hs(nsc);
    for (auto &v : hs) v = 1e-3f * powf(10.0f, frand());
    float *sc;
    CK(cudaMalloc(&sc, nsc * 4));
    CK(cudaMemcpy(sc, hs.data(), nsc * 4, cudaMemcpyHostToDevice));
    g4_dmatrix m = {1, rows, cols, w, sc};
    return m;
}

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/* Per-launch microseconds of `body` (reps launches captured in one graph). */
static float time_graph(cudaStream_t s, int reps, const std::function<void()> &body) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < reps; i++) body();
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
        t.push_back(ms * 1e3f / reps);
    }
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaEventDestroy(a), cudaEventDestroy(b);
    return median(t);
}

static float rel_diff(const float *da, const float *db, size_t n) {
    std::vector<float> a(n), b(n);
    CK(cudaMemcpy(a.data(), da, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), db, n * 4, cudaMemcpyDeviceToHost));
    double mx = 0, d = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(a[i])), d = fmax(d, fabs((double)a[i] - b[i]));
    return mx > 0 ? (float)(d / mx) : (float)d;
}

static int failures = 0;
static void report(const char *name, int M, double mb, float err, float t_old, float t_new) {
    const bool ok = err <= 1e-5f;
    failures += !ok;
    printf("%-26s M=%d %8.1f MB  err %.1e %s  old %7.1f us %6.0f GB/s   stream %7.1f us %6.0f GB/s\n", name, M, mb,
           err, ok ? "ok  " : "FAIL", t_old, mb * 1e3 / t_old, t_new, mb * 1e3 / t_new);
}

int main() {
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const int H = 3840, F = 15360;
    float *y_old = dev_floats(8 * 32768, 0, 0), *y_new = dev_floats(8 * 32768, 0, 0);
    float *x_h = dev_floats(2 * H, -1, 1), *x_f = dev_floats(2 * F, -1, 1), *x_q = dev_floats(2 * 8192, -1, 1);

    for (int M = 1; M <= 2; M++) {
        /* q/k/v of a sliding layer and q/k of a full one: one launch over 3 or 2 matrices */
        const int qkv_rows[2][3] = {{4096, 2048, 2048}, {8192, 512, 0}};
        for (int kind = 0; kind < 2; kind++) {
            const int n_mats = kind ? 2 : 3;
            g4_dmatrix w[3];
            float *yo[3], *yn[3];
            size_t off = 0, bytes = 0;
            for (int i = 0; i < n_mats; i++) {
                w[i] = make_matrix(qkv_rows[kind][i], H, 11 + i);
                yo[i] = y_old + off, yn[i] = y_new + off;
                off += (size_t)M * w[i].rows, bytes += (size_t)w[i].rows * H;
            }
            const g4k_gemv_input in = {.x = x_h};
            g4k_gemv(w, yo, n_mats, x_h, M, s);
            g4k_gemv_stream(w, yn, n_mats, &in, M, s);
            CK(cudaStreamSynchronize(s));
            const float e = rel_diff(y_old, y_new, off);
            const float to = time_graph(s, 20, [&] { g4k_gemv(w, yo, n_mats, x_h, M, s); });
            const float tn = time_graph(s, 20, [&] { g4k_gemv_stream(w, yn, n_mats, &in, M, s); });
            report(kind ? "q/k full (8192+512)x3840" : "q/k/v sliding 8192x3840", M, bytes / 1e6, e, to, tn);
            for (int i = 0; i < n_mats; i++) cudaFree((void *)w[i].data), cudaFree((void *)w[i].scales);
        }
        /* o (sliding and full) and down: 3840 rows, split-K 4 in the old path */
        const int out_cols[3] = {4096, 8192, F};
        for (int k = 0; k < 3; k++) {
            g4_dmatrix w = make_matrix(H, out_cols[k], 21 + k);
            const float *x = out_cols[k] == F ? x_f : x_q;
            const g4k_gemv_input in = {.x = x};
            float *yo = y_old, *yn = y_new;
            g4k_gemv(&w, &yo, 1, x, M, s);
            g4k_gemv_stream(&w, &yn, 1, &in, M, s);
            CK(cudaStreamSynchronize(s));
            const float e = rel_diff(y_old, y_new, (size_t)M * H);
            const float to = time_graph(s, 20, [&] { g4k_gemv_split(&w, &yo, 1, x, M, 4, s); });
            const float tn = time_graph(s, 20, [&] { g4k_gemv_stream(&w, &yn, 1, &in, M, s); });
            char name[64];
            snprintf(name, sizeof name, "%s 3840x%d", k == 2 ? "down" : "o", out_cols[k]);
            report(name, M, (double)H * out_cols[k] / 1e6, e, to, tn);
            cudaFree((void *)w.data), cudaFree((void *)w.scales);
        }
        /* gate/up + GeGLU */
        {
            g4_dmatrix gate = make_matrix(F, H, 31), up = make_matrix(F, H, 32);
            const g4k_gemv_input in = {.x = x_h};
            g4k_gemv_geglu(&gate, &up, y_old, x_h, M, s);
            g4k_gemv_stream_geglu(&gate, &up, y_new, &in, M, s);
            CK(cudaStreamSynchronize(s));
            const float e = rel_diff(y_old, y_new, (size_t)M * F);
            const float to = time_graph(s, 20, [&] { g4k_gemv_geglu(&gate, &up, y_old, x_h, M, s); });
            const float tn = time_graph(s, 20, [&] { g4k_gemv_stream_geglu(&gate, &up, y_new, &in, M, s); });
            report("gate/up+GeGLU 2x15360x3840", M, 2.0 * F * H / 1e6, e, to, tn);
            cudaFree((void *)gate.data), cudaFree((void *)gate.scales), cudaFree((void *)up.data),
                cudaFree((void *)up.scales);
        }
    }

    /* The residual update fused into the GEMV's input, against the norm kernel + GEMV. */
    {
        const int M = 1;
        g4_dmatrix w = make_matrix(F, H, 41);
        float *h0 = dev_floats(H, -3, 3), *h_a = dev_floats(H, 0, 0), *h_b = dev_floats(H, 0, 0);
        float *yparts = dev_floats(4 * H, -1, 1), *wp = dev_floats(H, 0.5f, 1.5f), *wn = dev_floats(H, 0.5f, 1.5f);
        float *xo = dev_floats(H, 0, 0);
        CK(cudaMemcpy(h_a, h0, H * 4, cudaMemcpyDeviceToDevice));
        g4k_residual_norm(h_a, yparts, 4, wp, 0.7f, xo, wn, M, H, 1e-6f, s);
        float *yo = y_old, *yn = y_new;
        g4k_gemv(&w, &yo, 1, xo, M, s);
        const g4k_gemv_input in = {.h_in = h0, .y = yparts, .w_post = wp, .w_next = wn, .h_out = h_b, .parts = 4,
                                   .scalar = 0.7f, .eps = 1e-6f};
        for (int kernel = 0; kernel < 2; kernel++) { /* the shared-x GEMV, then the streaming one */
            CK(cudaMemset(h_b, 0, H * 4));
            CK(cudaMemset(y_new, 0, F * 4));
            if (kernel) g4k_gemv_stream(&w, &yn, 1, &in, M, s);
            else g4k_gemv_x(&w, &yn, 1, &in, M, s);
            CK(cudaStreamSynchronize(s));
            const float eh = rel_diff(h_a, h_b, H), ey = rel_diff(y_old, y_new, F);
            const bool ok = eh <= 1e-6f && ey <= 1e-5f;
            failures += !ok;
            printf("fused residual update (%s) h err %.1e, y err %.1e %s\n", kernel ? "stream" : "shared-x", eh, ey,
                   ok ? "ok" : "FAIL");
        }
    }

    /* One decode layer's projections, 48 times in one graph (no attention). */
    {
        const int M = 1, L = 48;
        g4_dmatrix q = make_matrix(4096, H, 51), k = make_matrix(2048, H, 52), v = make_matrix(2048, H, 53),
                   o = make_matrix(H, 4096, 54), gate = make_matrix(F, H, 55), up = make_matrix(F, H, 56),
                   down = make_matrix(H, F, 57);
        g4_dmatrix qkv[3] = {q, k, v};
        float *h = dev_floats(H, -3, 3), *h2 = dev_floats(H, 0, 0), *x = dev_floats(H, -1, 1),
              *proj = dev_floats(4 * H, -1, 1), *ffn = dev_floats(F, -1, 1), *wn = dev_floats(H, 0.5f, 1.5f);
        float *yq = y_old, *yk = y_old + 4096, *yv = y_old + 6144, *ys[3] = {yq, yk, yv};
        const double mb = (8192.0 * H + H * 4096.0 + 2.0 * F * H + H * (double)F) * L / 1e6;
        const float t_old = time_graph(s, L, [&] {
            g4k_gemv(qkv, ys, 3, x, M, s);
            g4k_gemv_split(&o, &proj, 1, x_q, M, 4, s);
            g4k_residual_norm(h, proj, 4, wn, 1.0f, x, wn, M, H, 1e-6f, s);
            g4k_gemv_geglu(&gate, &up, ffn, x, M, s);
            g4k_gemv_split(&down, &proj, 1, ffn, M, 4, s);
            g4k_residual_norm(h, proj, 4, wn, 1.0f, x, wn, M, H, 1e-6f, s);
        });
        const float t_fused = time_graph(s, L, [&] {
            g4k_gemv_input a = {.h_in = h, .y = proj, .w_post = wn, .w_next = wn, .h_out = h2, .parts = 4,
                                .scalar = 1.0f, .eps = 1e-6f};
            g4k_gemv_x(qkv, ys, 3, &a, M, s);
            g4k_gemv_split(&o, &proj, 1, x_q, M, 4, s);
            g4k_gemv_input b = a;
            b.h_in = h2, b.h_out = h;
            g4k_gemv_geglu_x(&gate, &up, ffn, &b, M, s);
            g4k_gemv_split(&down, &proj, 1, ffn, M, 4, s);
        });
        const float t_new = time_graph(s, L, [&] {
            g4k_gemv_input a = {.h_in = h, .y = proj, .w_post = wn, .w_next = wn, .h_out = h2, .parts = 1,
                                .scalar = 1.0f, .eps = 1e-6f};
            g4k_gemv_stream(qkv, ys, 3, &a, M, s);
            const g4k_gemv_input px = {.x = x_q};
            g4k_gemv_stream(&o, &proj, 1, &px, M, s);
            g4k_gemv_input b = a;
            b.h_in = h2, b.h_out = h;
            g4k_gemv_stream_geglu(&gate, &up, ffn, &b, M, s);
            const g4k_gemv_input pf = {.x = ffn};
            g4k_gemv_stream(&down, &proj, 1, &pf, M, s);
        });
        printf("48 layers of projections   %.0f MB  old %.3f ms %.0f GB/s   norms fused %.3f ms %.0f GB/s   "
               "stream %.3f ms %.0f GB/s\n", mb, t_old * L / 1e3, mb * 1e3 / (t_old * L), t_fused * L / 1e3,
               mb * 1e3 / (t_fused * L), t_new * L / 1e3, mb * 1e3 / (t_new * L));
    }
    CK(cudaGetLastError());
    printf("%s\n", failures ? "FAILED" : "all agree");
    return failures ? 1 : 0;
}
