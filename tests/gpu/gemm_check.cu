/* GPU check and timing of g4k_gemm / g4k_gemm_geglu (src/cuda/gemm.cu and
 * gemm_wgmma.cu), every case with three kernels: "wgmma" (the default path),
 * "mma" (G4_GEMM=mma, the mma.sync kernel) and "wgmma1" (G4_GEMM=wgmma1, the
 * wgmma kernel with the warpgroup stagger, off by default).
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
 * The 12B shapes are also timed at M = 17, 64, 145, 512, 1024, 2048 (--quick:
 * 145 and 1024): the mean of 20 back-to-back calls between two events (the
 * reported figure; the GPU stays busy as in the forward pass) and the median
 * of 20 single calls (events around each, so it includes the host's launch
 * latency; the figure perf-log.md used before), counting 2*M*N*K flops per
 * matrix; the time includes the x -> FP16 pre-pass and the split-K reduction
 * when used: everything g4k_gemm does. A summary table gives each
 * shape's time per kernel and the sum over the 48 layers (40 sliding + 8 full).
 * Two calls are also captured in a CUDA graph and replayed: the result must be
 * bitwise equal to the direct call's.
 *
 * Output: "check ..." lines (correctness cases), "graph ..." lines, "time ..."
 * lines (shape, kernel, M, err, us, TFLOP/s), the summary, and last
 * "gemm_check: N passed, N failed" (exit status 1 if any failed).
 * Build: make build/tests/gpu/gemm_check
 * Run: build/tests/gpu/gemm_check [--quick] [--kernels wgmma,mma,wgmma1] (default: all three; a kernel that
 * traps kills the process's CUDA context, so --kernels mma still measures the baseline)
 * Tuning: build/tests/gpu/gemm_check --sweep 145 times every token tile x K split (G4_GEMM_TILE=BT,SPLITS)
 * of the wgmma kernel for each 12B shape at that M (no correctness check; prints the best per shape). */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "cuda/kernels.h"

#define CHECK_SEED 0x9E3779B97F4A7C15ull
#include "check.cuh"

/* A weight matrix on host and device. */
struct mat {
    int fp8, rows, cols;
    std::vector<uint8_t> codes;   /* fp8 */
    std::vector<uint16_t> vals;   /* bf16 */
    std::vector<float> scales;
    void *d_data = nullptr;
    float *d_scales = nullptr;
    g4_dmatrix dm = {}; /* every field, tiled included, zero unless set */
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

static int g_pass, g_fail;

/* Which kernel g4k_gemm uses (G4_GEMM is read on every call): the default (wgmma), gemm.cu's mma.sync
 * kernel (G4_GEMM=mma), and wgmma with the warpgroup stagger (G4_GEMM=wgmma1). */
#define NKERN 3
static const char *const kernels[NKERN] = {"wgmma", "mma", "wgmma1"};
static bool g_on[NKERN] = {true, true, true};
static void select_kernel(int k) {
    if (k == 0) unsetenv("G4_GEMM");
    else setenv("G4_GEMM", kernels[k], 1);
}

struct dev_x {
    std::vector<float> x;
    float *dx = nullptr, *dy = nullptr;
};
static void make_x(dev_x &d, int M, int K, int ny) {
    d.x.resize((size_t)M * K);
    for (auto &v : d.x) {
        double mag = 0.05 + urand() * 2.0;
        if (urand() < 0.01) mag *= 50.0;
        v = (float)(rnd() & 1 ? mag : -mag);
    }
    CK(cudaMalloc(&d.dx, d.x.size() * sizeof(float)));
    CK(cudaMemcpy(d.dx, d.x.data(), d.x.size() * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&d.dy, (size_t)ny * sizeof(float)));
}
static void free_x(dev_x &d) {
    CK(cudaFree(d.dx));
    CK(cudaFree(d.dy));
}

/* Reference rows: all (check_rows <= 0), or a subset with the edges of tiles and scale blocks. */
static std::vector<int> pick_rows(int N, int check_rows) {
    std::vector<int> rows;
    if (check_rows <= 0 || check_rows >= N) {
        for (int r = 0; r < N; r++) rows.push_back(r);
        return rows;
    }
    const int edge[] = {0, 1, 63, 64, 127, 128, 129, N / 2, N - 129, N - 128, N - 65, N - 64, N - 2, N - 1};
    for (int r : edge)
        if (r >= 0 && r < N) rows.push_back(r);
    while ((int)rows.size() < check_rows) rows.push_back((int)(rnd() % N));
    return rows;
}

/* ref[i][m] for rows[i], in double */
static std::vector<double> reference(const mat &w, const mat *u, const std::vector<float> &x, int M,
                                     const std::vector<int> &rows) {
    const int K = w.cols;
    std::vector<double> wr(K), ur(K), ref(rows.size() * (size_t)M);
    for (size_t i = 0; i < rows.size(); i++) {
        deq_row(w, rows[i], wr.data());
        if (u) deq_row(*u, rows[i], ur.data());
        for (int m = 0; m < M; m++) {
            const float *xm = &x[(size_t)m * K];
            double a = 0, b = 0;
            for (int k = 0; k < K; k++) a += xm[k] * wr[k];
            if (u) {
                for (int k = 0; k < K; k++) b += xm[k] * ur[k];
                a = gelu(a) * b;
            }
            ref[i * M + m] = a;
        }
    }
    return ref;
}

struct outcome {
    double err;
    size_t unwritten;
    bool ok;
};

/* Poison y with NaN, run once, compare with the reference. */
static outcome check_run(const mat &w, const mat *u, dev_x &d, int M, const std::vector<int> &rows,
                         const std::vector<double> &ref, cudaStream_t st) {
    const int N = w.rows;
    const size_t ny = (size_t)M * N;
    g4_stream gs = reinterpret_cast<g4_stream>(st);
    CK(cudaMemsetAsync(d.dy, 0xff, ny * sizeof(float), st));
    if (u) g4k_gemm_geglu(&w.dm, &u->dm, d.dy, d.dx, M, gs);
    else g4k_gemm(&w.dm, d.dy, d.dx, M, gs);
    CK(cudaGetLastError());
    CK(cudaStreamSynchronize(st));
    std::vector<float> y(ny);
    CK(cudaMemcpy(y.data(), d.dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
    outcome o = {0, 0, false};
    for (size_t i = 0; i < ny; i++)
        if (!std::isfinite(y[i])) o.unwritten++;
    double num = 0, den = 0;
    for (size_t i = 0; i < rows.size(); i++)
        for (int m = 0; m < M; m++) {
            const double a = ref[i * M + m], dd = y[(size_t)m * N + rows[i]] - a;
            num += dd * dd, den += a * a;
        }
    o.err = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    if (!(o.err == o.err)) o.err = INFINITY;
    o.ok = o.unwritten == 0 && o.err < 2e-3;
    return o;
}

/* Times in microseconds: *single = median of 20 single launches between events (after 3 warm-ups;
 * includes the host's launch latency), return value = mean of 20 back-to-back calls (the GPU kept busy,
 * as in the forward pass). */
static double time_run(const mat &w, const mat *u, dev_x &d, int M, cudaStream_t st, double *single) {
    g4_stream gs = reinterpret_cast<g4_stream>(st);
    auto launch = [&]() {
        if (u) g4k_gemm_geglu(&w.dm, &u->dm, d.dy, d.dx, M, gs);
        else g4k_gemm(&w.dm, d.dy, d.dx, M, gs);
    };
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 3; i++) launch();
    CK(cudaGetLastError());
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
    *single = 1e3 * ms[ms.size() / 2];
    launch(); /* keeps the GPU busy while the timed calls are queued */
    CK(cudaEventRecord(e0, st));
    for (int i = 0; i < 20; i++) launch();
    CK(cudaEventRecord(e1, st));
    CK(cudaEventSynchronize(e1));
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    CK(cudaGetLastError());
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return 1e3 * t / 20;
}

/* One correctness case (no timing) for the selected kernel. */
static void run_case(const char *name, int kern, int fp8, int M, int N, int K, bool geglu, bool zero_scales,
                     int check_rows) {
    select_kernel(kern);
    mat w, u;
    make_mat(w, fp8, N, K, zero_scales);
    if (geglu) make_mat(u, fp8, N, K, zero_scales);
    dev_x d;
    make_x(d, M, K, M * N);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    const std::vector<int> rows = pick_rows(N, check_rows);
    const std::vector<double> ref = reference(w, geglu ? &u : nullptr, d.x, M, rows);
    const outcome o = check_run(w, geglu ? &u : nullptr, d, M, rows, ref, st);
    printf("check %-22s %-5s M=%5d N=%6d K=%6d %s%s rows=%zu err=%.3e unwritten=%zu %s\n", name, kernels[kern], M, N,
           K, fp8 ? "fp8 " : "bf16", geglu ? " geglu" : "      ", rows.size(), o.err, o.unwritten,
           o.ok ? "ok" : "FAIL");
    fflush(stdout);
    (o.ok ? g_pass : g_fail)++;
    CK(cudaStreamDestroy(st));
    free_x(d);
    free_mat(w);
    if (geglu) free_mat(u);
}

/* The 12B's GEMMs (model.md): rows N, cols K; geglu = gate and up in one call. */
struct shape {
    const char *name;
    int N, K;
    bool geglu;
    int per_sliding, per_full; /* calls per sliding / full layer */
};
/* The prefill runs q/k/v as one GEMM over the concatenated matrix (q 4096 + k
 * 2048 + v 2048 rows in a sliding layer, q 8192 + k 512 in a full one, where
 * v is k); the parts alone are what G4_PREFILL_QKV=separate and W8A8 run (not
 * counted in the step total; q full has the sliding q/k/v shape). */
static const shape shapes[] = {
    {"q/k/v sliding", 8192, 3840, false, 1, 0}, {"q/k full", 8704, 3840, false, 0, 1},
    {"q sliding", 4096, 3840, false, 0, 0},     {"k/v sliding", 2048, 3840, false, 0, 0},
    {"k full", 512, 3840, false, 0, 0},         {"o sliding", 3840, 4096, false, 1, 0},
    {"o full", 3840, 8192, false, 0, 1},        {"gate+up geglu", 15360, 3840, true, 1, 1},
    {"down", 3840, 15360, false, 1, 1},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])
static const int timed_Ms[] = {17, 64, 145, 512, 1024, 2048};
#define NMS (int)(sizeof timed_Ms / sizeof timed_Ms[0])
static double g_us[NSHAPES][NMS][NKERN];

/* Each 12B shape at each M with both kernels: error against the same float64 reference and time. */
static void run_timed(int si, int check_rows, bool quick) {
    const shape &sh = shapes[si];
    mat w, u;
    make_mat(w, 1, sh.N, sh.K, false);
    if (sh.geglu) make_mat(u, 1, sh.N, sh.K, false);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    for (int mi = 0; mi < NMS; mi++) {
        const int M = timed_Ms[mi];
        if (quick && M != 145 && M != 1024) continue;
        dev_x d;
        make_x(d, M, sh.K, M * sh.N);
        const std::vector<int> rows = pick_rows(sh.N, M >= 1024 ? check_rows / 2 : check_rows);
        const std::vector<double> ref = reference(w, sh.geglu ? &u : nullptr, d.x, M, rows);
        for (int k = 0; k < NKERN; k++) {
            if (!g_on[k]) continue;
            select_kernel(k);
            const outcome o = check_run(w, sh.geglu ? &u : nullptr, d, M, rows, ref, st);
            double single;
            const double us = time_run(w, sh.geglu ? &u : nullptr, d, M, st, &single);
            const double tf = (sh.geglu ? 4.0 : 2.0) * M * (double)sh.N * sh.K / (us * 1e-6) / 1e12;
            g_us[si][mi][k] = us;
            printf("time  %-14s %-5s M=%5d N=%6d K=%6d%s err=%.3e unwritten=%zu %-4s %9.1f us %7.1f TFLOP/s"
                   "  (single launch %.1f us)\n",
                   sh.name, kernels[k], M, sh.N, sh.K, sh.geglu ? " (x2)" : "     ", o.err, o.unwritten,
                   o.ok ? "ok" : "FAIL", us, tf, single);
            fflush(stdout);
            (o.ok ? g_pass : g_fail)++;
        }
        free_x(d);
    }
    CK(cudaStreamDestroy(st));
    free_mat(w);
    if (sh.geglu) free_mat(u);
}

/* A call captured in a CUDA graph after a first direct call must replay to the same bits. */
static void run_graph(int M, int N, int K, bool geglu) {
    select_kernel(0);
    mat w, u;
    make_mat(w, 1, N, K, false);
    if (geglu) make_mat(u, 1, N, K, false);
    dev_x d;
    make_x(d, M, K, M * N);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    g4_stream gs = reinterpret_cast<g4_stream>(st);
    const size_t ny = (size_t)M * N;
    auto launch = [&]() {
        if (geglu) g4k_gemm_geglu(&w.dm, &u.dm, d.dy, d.dx, M, gs);
        else g4k_gemm(&w.dm, d.dy, d.dx, M, gs);
    };
    launch();
    CK(cudaStreamSynchronize(st));
    std::vector<float> y0(ny), y1(ny);
    CK(cudaMemcpy(y0.data(), d.dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
    CK(cudaMemset(d.dy, 0xff, ny * sizeof(float)));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    launch();
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, st));
    CK(cudaGraphLaunch(exec, st));
    CK(cudaStreamSynchronize(st));
    CK(cudaMemcpy(y1.data(), d.dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
    const bool ok = memcmp(y0.data(), y1.data(), ny * sizeof(float)) == 0;
    printf("graph M=%d N=%d K=%d%s: replay %s the direct call\n", M, N, K, geglu ? " geglu" : "",
           ok ? "bitwise equal to" : "DIFFERS from");
    (ok ? g_pass : g_fail)++;
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(st));
    free_x(d);
    free_mat(w);
    if (geglu) free_mat(u);
}

/* Tiled weights (kernels.h) through the wgmma kernel: the same rows, read through a 4-D map and
 * another shared-memory address pattern, must give bitwise the row-major result (same products,
 * same order); also under G4_GEMM=mma, which tiled weights ignore. Both layouts are timed. */
static void run_tiled(int M, int N, int K, bool geglu) {
    mat w, u;
    make_mat(w, 1, N, K, false);
    if (geglu) make_mat(u, 1, N, K, false);
    dev_x d;
    make_x(d, M, K, M * N);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    g4_stream gs = reinterpret_cast<g4_stream>(st);
    g4_dmatrix tw = w.dm, tu = geglu ? u.dm : w.dm;
    void *tw_data, *tu_data = nullptr;
    CK(cudaMalloc(&tw_data, (size_t)N * K));
    g4k_retile(tw_data, w.d_data, N, K, gs);
    tw.data = tw_data, tw.tiled = 1;
    if (geglu) {
        CK(cudaMalloc(&tu_data, (size_t)N * K));
        g4k_retile(tu_data, u.d_data, N, K, gs);
        tu.data = tu_data, tu.tiled = 1;
    }
    const size_t ny = (size_t)M * N;
    auto run = [&](const g4_dmatrix &a, const g4_dmatrix &b) {
        if (geglu) g4k_gemm_geglu(&a, &b, d.dy, d.dx, M, gs);
        else g4k_gemm(&a, d.dy, d.dx, M, gs);
    };
    auto result = [&](const g4_dmatrix &a, const g4_dmatrix &b) {
        CK(cudaMemsetAsync(d.dy, 0xff, ny * sizeof(float), st));
        run(a, b);
        CK(cudaStreamSynchronize(st));
        std::vector<float> y(ny);
        CK(cudaMemcpy(y.data(), d.dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
        return y;
    };
    auto time_us = [&](const g4_dmatrix &a, const g4_dmatrix &b) {
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        run(a, b);
        CK(cudaEventRecord(e0, st));
        for (int i = 0; i < 20; i++) run(a, b);
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        CK(cudaEventDestroy(e0));
        CK(cudaEventDestroy(e1));
        return ms * 1e3 / 20;
    };
    select_kernel(0);
    const std::vector<float> y_rows = result(w.dm, geglu ? u.dm : w.dm), y_tiled = result(tw, tu);
    setenv("G4_GEMM", "mma", 1);
    const std::vector<float> y_tiled_mma = result(tw, tu);
    select_kernel(0);
    bool finite = true;
    for (float v : y_rows) finite = finite && std::isfinite(v);
    const bool ok = finite && memcmp(y_rows.data(), y_tiled.data(), ny * 4) == 0 &&
                    memcmp(y_rows.data(), y_tiled_mma.data(), ny * 4) == 0;
    const double t_rows = time_us(w.dm, geglu ? u.dm : w.dm), t_tiled = time_us(tw, tu);
    printf("tiled M=%d N=%d K=%d%s: %s row-major (also under G4_GEMM=mma); us row-major %.1f, tiled %.1f\n", M, N,
           K, geglu ? " geglu" : "", ok ? "bitwise equal to" : "DIFFERS from", t_rows, t_tiled);
    (ok ? g_pass : g_fail)++;
    CK(cudaFree(tw_data));
    if (tu_data) CK(cudaFree(tu_data));
    CK(cudaStreamDestroy(st));
    free_x(d);
    free_mat(w);
    if (geglu) free_mat(u);
}

/* --sweep M: every token tile x split (G4_GEMM_TILE) for each 12B shape at M, wgmma, time only. */
static void run_sweep(int M) {
    static const int bts[] = {24, 32, 48, 64, 80, 96, 128, 152, 176, 208};
    static const int sps[] = {1, 2, 3, 4, 6, 8};
    select_kernel(0);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    for (int si = 0; si < NSHAPES; si++) {
        const shape &sh = shapes[si];
        mat w, u;
        make_mat(w, 1, sh.N, sh.K, false);
        if (sh.geglu) make_mat(u, 1, sh.N, sh.K, false);
        dev_x d;
        make_x(d, M, sh.K, M * sh.N);
        unsetenv("G4_GEMM_TILE");
        double single, best = time_run(w, sh.geglu ? &u : nullptr, d, M, st, &single);
        const double f = (sh.geglu ? 4.0 : 2.0) * M * (double)sh.N * sh.K / 1e6;
        printf("sweep M=%d %-14s default %.1f us [%.0f]\n", M, sh.name, best, f / best);
        int bb = 0, bs = 0;
        for (int bt : bts)
            for (int sp : sps) {
                if (sp > 1 && sp > sh.K / 128 / 2) continue;
                char v[32];
                snprintf(v, sizeof v, "%d,%d", bt, sp);
                setenv("G4_GEMM_TILE", v, 1);
                const double us = time_run(w, sh.geglu ? &u : nullptr, d, M, st, &single);
                printf("sweep M=%d %-14s BT=%3d split=%d %8.1f us [%3.0f]\n", M, sh.name, bt, sp, us, f / us);
                if (us < best) best = us, bb = bt, bs = sp;
            }
        unsetenv("G4_GEMM_TILE");
        printf("sweep M=%d %-14s best %s%d,%d %.1f us [%.0f]\n", M, sh.name, bb ? "G4_GEMM_TILE=" : "default ", bb, bs,
               best, f / best);
        fflush(stdout);
        free_x(d);
        free_mat(w);
        if (sh.geglu) free_mat(u);
    }
    CK(cudaStreamDestroy(st));
}

int main(int argc, char **argv) {
    bool quick = false;
    int sweep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--sweep") && i + 1 < argc) sweep = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) {
            const char *list = argv[++i];
            for (int k = 0; k < NKERN; k++) {
                g_on[k] = false;
                for (const char *p = strstr(list, kernels[k]); p; p = strstr(p + 1, kernels[k]))
                    if ((p == list || p[-1] == ',') && (p[strlen(kernels[k])] == ',' || !p[strlen(kernels[k])]))
                        g_on[k] = true;
            }
        } else {
            fprintf(stderr, "usage: %s [--quick] [--kernels wgmma,mma,wgmma1] [--sweep M]\n", argv[0]);
            return 2;
        }
    }
    int dev = 0;
    CK(cudaSetDevice(dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("device: %s, %d SMs, cc %d.%d\n", prop.name, prop.multiProcessorCount, prop.major, prop.minor);
    if (sweep > 0) {
        run_sweep(sweep);
        return 0;
    }

    /* small and odd shapes with both kernels (wgmma takes FP8 with K % 128 == 0; the rest falls back to
     * mma.sync: K = 200 unaligned rows, K = 96 and 208 partial stages, BF16) */
    for (int k = 0; k < NKERN; k++) {
        if (!g_on[k]) continue;
        const int Ms[] = {9, 64, 145, 1024};
        for (int M : Ms) run_case("fp8 odd", k, 1, M, 300, 200, false, false, 0);
        run_case("fp8 M=1", k, 1, 1, 300, 200, false, false, 0);
        run_case("fp8 M=3", k, 1, 3, 256, 256, false, false, 0);
        run_case("fp8 K=96", k, 1, 145, 300, 96, false, false, 0);
        run_case("fp8 K=128", k, 1, 145, 300, 128, false, false, 0);
        run_case("fp8 K=208", k, 1, 33, 136, 208, false, false, 0);
        run_case("fp8 zero scales", k, 1, 77, 384, 1024, false, true, 0);
        run_case("fp8 split-K", k, 1, 145, 300, 2048, false, false, 0);
        run_case("fp8 N=200 M=300", k, 1, 300, 200, 512, false, false, 0);
        run_case("fp8 M=17 N=4096", k, 1, 17, 4096, 3840, false, false, 48);
        run_case("fp8 M=250 N=1000", k, 1, 250, 1000, 1280, false, false, 0);
        for (int M : Ms) run_case("fp8 geglu odd", k, 1, M, 300, 200, true, false, 0);
        run_case("fp8 geglu split-K", k, 1, 145, 300, 2048, true, false, 0);
        run_case("fp8 geglu aligned", k, 1, 100, 200, 256, true, false, 0);
        run_case("fp8 geglu zero scales", k, 1, 200, 320, 1024, true, true, 0);
        run_case("fp8 geglu M=600", k, 1, 600, 192, 512, true, false, 0);
        run_case("bf16 aligned", k, 0, 145, 300, 200, false, false, 0);
        run_case("bf16 unaligned", k, 0, 64, 300, 100, false, false, 0);
        run_case("bf16 M=1000", k, 0, 1000, 264, 512, false, false, 0);
        run_case("bf16 geglu", k, 0, 33, 300, 256, true, false, 0);
    }
    if (g_on[0]) {
        run_tiled(17, 4096, 3840, false);
        run_tiled(145, 8192, 3840, false);
        run_tiled(145, 15360, 3840, true);
        run_tiled(145, 3840, 15360, false);
        run_tiled(1024, 3840, 4096, false);
        run_tiled(300, 208, 1024, true); /* a 64-row segment past the end: tiles zero-filled */
        run_graph(145, 15360, 3840, true);
        run_graph(145, 3840, 15360, false);
    }

    /* the 12B shapes, timed */
    for (int si = 0; si < NSHAPES; si++) run_timed(si, quick ? 16 : 32, quick);

    /* summary: per M, each shape's time with both kernels, and the GEMM time of the 48-layer model */
    printf("\nsummary: us per call (back-to-back mean) [TFLOP/s] for wgmma | mma | wgmma1\n");
    for (int mi = 0; mi < NMS; mi++) {
        if (g_us[0][mi][0] <= 0 && g_us[0][mi][1] <= 0 && g_us[0][mi][2] <= 0) continue;
        const int M = timed_Ms[mi];
        double t[NKERN] = {0, 0, 0};
        for (int si = 0; si < NSHAPES; si++) {
            const shape &sh = shapes[si];
            const double f = (sh.geglu ? 4.0 : 2.0) * M * (double)sh.N * sh.K / 1e6;
            printf("M=%-5d %-14s N=%6d K=%6d", M, sh.name, sh.N, sh.K);
            for (int k = 0; k < NKERN; k++) {
                if (g_us[si][mi][k] <= 0) {
                    printf("  %13s", "-");
                    continue;
                }
                printf("  %7.1f [%3.0f]", g_us[si][mi][k], f / g_us[si][mi][k]);
                t[k] += g_us[si][mi][k] * (40 * shapes[si].per_sliding + 8 * shapes[si].per_full);
            }
            printf("\n");
        }
        printf("M=%-5d 48 layers' GEMMs (40 sliding + 8 full):", M);
        for (int k = 0; k < NKERN; k++) printf("  %s %.2f ms", kernels[k], t[k] / 1e3);
        printf("\n");
    }
    printf("gemm_check: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
