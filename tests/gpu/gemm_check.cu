/* GPU check and timing of g4k_gemm / g4k_gemm_geglu (src/cuda/gemm.cu).
 *
 * For each case: random FP8 codes (never the NaN codes 0x7F/0xFF) with varied
 * per-128x128-block scales (or random BF16 weights), random x (never zero, a
 * few outliers), y poisoned with NaN before the run; after it every element of
 * y must be finite (written) and ||y - ref|| / ||ref|| < 2e-3 against a CPU
 * float64 reference (all rows for small shapes, a subset of rows, including
 * tile and scale-block edges, for the big ones).
 *
 * The bound: the kernel is exact on the weight side and accumulates in FP32;
 * the only coarse rounding is x -> FP16 (unit roundoff 2^-11, about 2e-4 rms
 * relative per element). With independent rounding errors the relative error
 * of the dot products is of that order (2.0-2.3e-4 for K = 200, 3840, 15360
 * in a float64 CPU model of just that rounding, with these input
 * distributions); 2e-3 leaves ~10x for cancellation-heavy outputs. BF16 weights add their
 * BF16 -> FP16 conversion (exact in the normal FP16 range). GeGLU outputs see
 * the same relative error amplified by at most gelu's condition number (~1-2).
 *
 * The 12B shapes are also timed (warm-up 3, median of 20 launches, events),
 * counting 2*M*N*K flops per matrix; the time includes the x -> FP16 pre-pass
 * and the split-K reduction when used: everything g4k_gemm does.
 *
 * Build: make build/tests/gpu/gemm_check; run: build/tests/gpu/gemm_check [--quick]
 * Last line: "gemm_check: N passed, N failed". */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda/kernels.h"

#define CK(call)                                                                                          \
    do {                                                                                                  \
        cudaError_t e_ = (call);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));      \
            exit(2);                                                                                      \
        }                                                                                                 \
    } while (0)

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd() { /* xorshift64* */
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}
static double urand() { return (rnd() >> 11) * (1.0 / 9007199254740992.0); }

static double e4m3(uint8_t c) {
    const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    const double v = e == 0 ? m / 8.0 * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
    return s ? -v : v;
}
static double bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A weight matrix on host and device. */
struct mat {
    int fp8, rows, cols;
    std::vector<uint8_t> codes;   /* fp8 */
    std::vector<uint16_t> vals;   /* bf16 */
    std::vector<float> scales;
    void *d_data = nullptr;
    float *d_scales = nullptr;
    g4_dmatrix dm;
};

static void make_mat(mat &w, int fp8, int rows, int cols, bool zero_scales) {
    w.fp8 = fp8, w.rows = rows, w.cols = cols;
    const size_t n = (size_t)rows * cols;
    const int rb = (rows + 127) / 128, cb = (cols + 127) / 128;
    if (fp8) {
        w.codes.resize(n);
        for (size_t i = 0; i < n; i++) {
            uint8_t c;
            do c = (uint8_t)(rnd() >> 56);
            while ((c & 0x7f) == 0x7f);
            w.codes[i] = c;
        }
        w.scales.resize((size_t)rb * cb);
        for (auto &s : w.scales) {
            s = (float)exp(log(1e-5) + urand() * (log(1e-2) - log(1e-5)));
            if (zero_scales && urand() < 0.1) s = 0.0f;
        }
        CK(cudaMalloc(&w.d_data, n));
        CK(cudaMemcpy(w.d_data, w.codes.data(), n, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&w.d_scales, w.scales.size() * sizeof(float)));
        CK(cudaMemcpy(w.d_scales, w.scales.data(), w.scales.size() * sizeof(float), cudaMemcpyHostToDevice));
    } else {
        w.vals.resize(n);
        for (size_t i = 0; i < n; i++) {
            float f = (float)((urand() * 2 - 1) * 0.1);
            if (f == 0.0f) f = 0.01f;
            uint32_t u;
            memcpy(&u, &f, 4);
            w.vals[i] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
        }
        CK(cudaMalloc(&w.d_data, n * 2));
        CK(cudaMemcpy(w.d_data, w.vals.data(), n * 2, cudaMemcpyHostToDevice));
    }
    w.dm.fp8 = fp8, w.dm.rows = rows, w.dm.cols = cols, w.dm.data = w.d_data, w.dm.scales = w.d_scales;
}

static void free_mat(mat &w) {
    if (w.d_data) CK(cudaFree(w.d_data));
    if (w.d_scales) CK(cudaFree(w.d_scales));
    w.d_data = nullptr, w.d_scales = nullptr;
}

/* row r of W, dequantized, in double */
static void deq_row(const mat &w, int r, double *out) {
    const int cb = (w.cols + 127) / 128;
    for (int k = 0; k < w.cols; k++) {
        const size_t i = (size_t)r * w.cols + k;
        out[k] = w.fp8 ? e4m3(w.codes[i]) * (double)w.scales[(size_t)(r / 128) * cb + k / 128] : bf16(w.vals[i]);
    }
}

static double gelu(double v) { return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }

struct result {
    char name[64];
    int M, N, K;
    double err;
    bool ok;
    double us, tflops;
};
static std::vector<result> g_results;
static int g_pass, g_fail;

/* One case: plain (geglu 0) or GeGLU; time it when `timed`. */
static void run_case(const char *name, int fp8, int M, int N, int K, bool geglu, bool timed, bool zero_scales,
                     int check_rows) {
    mat w, u;
    make_mat(w, fp8, N, K, zero_scales);
    if (geglu) make_mat(u, fp8, N, K, zero_scales);
    std::vector<float> x((size_t)M * K);
    for (auto &v : x) {
        double mag = 0.05 + urand() * 2.0;
        if (urand() < 0.01) mag *= 50.0;
        v = (float)(rnd() & 1 ? mag : -mag);
    }
    float *dx, *dy;
    const size_t ny = (size_t)M * N;
    CK(cudaMalloc(&dx, x.size() * sizeof(float)));
    CK(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&dy, ny * sizeof(float)));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    g4_stream gs = reinterpret_cast<g4_stream>(st);

    auto launch = [&]() {
        if (geglu) g4k_gemm_geglu(&w.dm, &u.dm, dy, dx, M, gs);
        else g4k_gemm(&w.dm, dy, dx, M, gs);
        CK(cudaGetLastError());
    };

    /* poison (NaN), run, check */
    CK(cudaMemsetAsync(dy, 0xff, ny * sizeof(float), st));
    launch();
    CK(cudaStreamSynchronize(st));
    std::vector<float> y(ny);
    CK(cudaMemcpy(y.data(), dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
    size_t unwritten = 0;
    for (size_t i = 0; i < ny; i++)
        if (!std::isfinite(y[i])) unwritten++;

    /* reference rows: all, or a subset with the edges of tiles and scale blocks */
    std::vector<int> rows;
    if (check_rows <= 0 || check_rows >= N) {
        for (int r = 0; r < N; r++) rows.push_back(r);
    } else {
        const int edge[] = {0, 1, 63, 64, 127, 128, 129, N / 2, N - 129, N - 128, N - 65, N - 64, N - 2, N - 1};
        for (int r : edge)
            if (r >= 0 && r < N) rows.push_back(r);
        while ((int)rows.size() < check_rows) rows.push_back((int)(rnd() % N));
    }
    std::vector<double> wr(K), ur(K);
    double num = 0, den = 0;
    for (int r : rows) {
        deq_row(w, r, wr.data());
        if (geglu) deq_row(u, r, ur.data());
        for (int m = 0; m < M; m++) {
            const float *xm = &x[(size_t)m * K];
            double a = 0, b = 0;
            for (int k = 0; k < K; k++) a += xm[k] * wr[k];
            if (geglu) {
                for (int k = 0; k < K; k++) b += xm[k] * ur[k];
                a = gelu(a) * b;
            }
            const double d = y[(size_t)m * N + r] - a;
            num += d * d, den += a * a;
        }
    }
    double err = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    if (!(err == err)) err = INFINITY;
    const bool ok = unwritten == 0 && err < 2e-3;

    double us = 0, tf = 0;
    if (timed) {
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        for (int i = 0; i < 3; i++) launch();
        std::vector<float> ms;
        for (int i = 0; i < 20; i++) {
            CK(cudaEventRecord(e0, st));
            launch();
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float t;
            CK(cudaEventElapsedTime(&t, e0, e1));
            ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        us = 1e3 * ms[ms.size() / 2];
        tf = (geglu ? 4.0 : 2.0) * M * (double)N * K / (us * 1e-6) / 1e12;
        CK(cudaEventDestroy(e0));
        CK(cudaEventDestroy(e1));
    }
    printf("%-28s M=%5d N=%6d K=%6d %s%s rows=%zu err=%.3e unwritten=%zu %s", name, M, N, K, fp8 ? "fp8 " : "bf16",
           geglu ? " geglu" : "      ", rows.size(), err, unwritten, ok ? "ok" : "FAIL");
    if (timed) printf("  %.1f us  %.1f TFLOP/s", us, tf);
    printf("\n");
    fflush(stdout);
    result res;
    snprintf(res.name, sizeof res.name, "%s", name);
    res.M = M, res.N = N, res.K = K, res.err = err, res.ok = ok, res.us = us, res.tflops = tf;
    g_results.push_back(res);
    (ok ? g_pass : g_fail)++;

    CK(cudaStreamDestroy(st));
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    free_mat(w);
    if (geglu) free_mat(u);
}

int main(int argc, char **argv) {
    const bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    int dev = 0;
    CK(cudaSetDevice(dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("device: %s, %d SMs, cc %d.%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);

    /* odd shapes (K = 200: rows not 16-byte aligned -> synchronous weight loads; K = 96, 208: partial stages) */
    const int Ms[] = {9, 64, 145, 1024};
    for (int M : Ms) run_case("fp8 odd", 1, M, 300, 200, false, false, false, 0);
    run_case("fp8 M=1", 1, 1, 300, 200, false, false, false, 0);
    run_case("fp8 M=3", 1, 3, 256, 256, false, false, false, 0);
    run_case("fp8 K=96", 1, 145, 300, 96, false, false, false, 0);
    run_case("fp8 K=208", 1, 33, 136, 208, false, false, false, 0);
    run_case("fp8 zero scales", 1, 77, 384, 1024, false, false, true, 0);
    run_case("fp8 split-K", 1, 145, 300, 2048, false, false, false, 0);
    run_case("fp8 M=17 N=4096", 1, 17, 4096, 3840, false, false, false, 48);
    for (int M : Ms) run_case("fp8 geglu odd", 1, M, 300, 200, true, false, false, 0);
    run_case("fp8 geglu split-K", 1, 145, 300, 2048, true, false, false, 0);
    run_case("fp8 geglu aligned", 1, 100, 200, 256, true, false, false, 0);
    run_case("bf16 aligned", 0, 145, 300, 200, false, false, false, 0);
    run_case("bf16 unaligned", 0, 64, 300, 100, false, false, false, 0);
    run_case("bf16 M=1000", 0, 1000, 264, 512, false, false, false, 0);
    run_case("bf16 geglu", 0, 33, 300, 256, true, false, false, 0);

    /* the 12B shapes, timed */
    const int check = quick ? 16 : 48;
    run_case("12B gate/up-like 145", 1, 145, 15360, 3840, false, true, false, check);
    run_case("12B down 145", 1, 145, 3840, 15360, false, true, false, check);
    run_case("12B gate/up-like 1024", 1, 1024, 15360, 3840, false, true, false, check);
    run_case("12B down 1024", 1, 1024, 3840, 15360, false, true, false, check);
    run_case("12B q 145", 1, 145, 4096, 3840, false, true, false, check);
    run_case("12B o 145", 1, 145, 3840, 4096, false, true, false, check);
    run_case("12B geglu 145", 1, 145, 15360, 3840, true, true, false, check);
    if (!quick) run_case("12B geglu 1024", 1, 1024, 15360, 3840, true, true, false, check);

    printf("\n%-28s %5s %6s %6s %10s %6s %10s %9s\n", "case", "M", "N", "K", "rel.err", "ok", "us", "TFLOP/s");
    for (const result &r : g_results) {
        printf("%-28s %5d %6d %6d %10.3e %6s", r.name, r.M, r.N, r.K, r.err, r.ok ? "ok" : "FAIL");
        if (r.us > 0) printf(" %10.1f %9.1f", r.us, r.tflops);
        printf("\n");
    }
    printf("gemm_check: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
