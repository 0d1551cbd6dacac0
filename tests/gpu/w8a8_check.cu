/* GPU check and timing of g4k_gemm_w8a8 / g4k_gemm_w8a8_geglu (src/cuda/gemm_w8a8.cu),
 * next to g4k_gemm / g4k_gemm_geglu (src/cuda/gemm.cu) on the same data.
 *
 * Data: random FP8 weight codes (never NaN) with per-128x128-block scales spread
 * log-uniformly over 1e-5..1e-2; x with a per-(token, 128-group) magnitude spread
 * log-uniformly over 0.05..20 (so that a wrong activation-scale layout cannot
 * pass), elements 0.05..2.05 with random sign, 1% outliers x50, never zero except
 * one all-zero group in the small cases (amax 0). y is poisoned with NaN first.
 * Small shapes cover M % 4 != 0 (padded tokens), K/128 % 4 != 0 (padded weight
 * scales) and GeGLU; N or K not a multiple of 128 must be refused (-1).
 *
 * Two references in float64, over all rows (small shapes) or 48 rows including
 * tile and scale-block edges (12B shapes), all tokens:
 *   - "quant": the same quantized math (x quantized on the host exactly as the
 *     kernel does: s = amax/448 in fp32, q = RNE-saturating E4M3 of x/s in fp32;
 *     weights dequantized). Only summation order/precision differs: expect
 *     ~1e-6..5e-5 (Hopper FP8 tensor cores accumulate a 128-wide block with
 *     ~14-bit precision before cuBLAS promotes it to fp32). PASS below 1e-3.
 *   - "exact": unquantized x. This is the W8A8 quantization error: E4M3 keeps
 *     3 mantissa bits (~2-3% rms relative per element) and random errors partly
 *     cancel in a dot product; expect 1-3%. PASS below 8e-2.
 * On a "quant" failure the output is also compared against a few wrong
 * interpretations of the scale layouts, to say which one cuBLASLt used.
 *
 * Every 12B case is also captured in a CUDA graph after its first call and
 * replayed: the replay must reproduce the eager output (bit for bit expected;
 * 1e-6 relative accepted, in case cuBLAS picks an unordered split-K reduction).
 *
 * Timings: warm-up 3, median of 20 launches between CUDA events, counting
 * 2*M*N*K flops per weight matrix; the W8A8 time includes the quantization kernel
 * (and the GeGLU kernel or the copy for M % 4 != 0), the g4k_gemm time its x->FP16
 * pre-pass and split-K reduction.
 *
 * Build (repo root): make BUILD=.devbuild STATIC_OMP=1 .devbuild/tests/gpu/w8a8_check
 * Run: .devbuild/tests/gpu/w8a8_check [--quick]
 * Last line: "w8a8_check: N passed, N failed"; exit status 1 on any failure. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "cuda/kernels.h"

#define CHECK_SEED 0x2545F4914F6CDD1Dull
#include "check.cuh"

static double logu(double lo, double hi) { return exp(log(lo) + urand() * (log(hi) - log(lo))); }

/* ---- E4M3 on the host ---- */
static float g_e4m3[256];
static void e4m3_init() {
    for (int c = 0; c < 256; c++) {
        const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
        double v = e == 0 ? m / 8.0 * ldexp(1.0, -6) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
        if ((c & 0x7f) == 0x7f) v = NAN;
        g_e4m3[c] = (float)(s ? -v : v);
    }
}
/* Round to nearest, ties to even (even code), saturating to +-448 (like __NV_SATFINITE). */
static uint8_t e4m3_enc(float f) {
    if (f != f) return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    const float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    int lo = 0, hi = 0x7e; /* largest code with value <= a */
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (g_e4m3[mid] <= a) lo = mid;
        else hi = mid - 1;
    }
    int c = lo;
    if (c < 0x7e) {
        const double dl = (double)a - g_e4m3[c], dh = (double)g_e4m3[c + 1] - a;
        if (dh < dl || (dh == dl && (c & 1))) c++;
    }
    return sign | (uint8_t)c;
}

/* ---- data ---- */
struct mat {
    int rows, cols, rb, cb;
    std::vector<uint8_t> codes;
    std::vector<float> scales; /* [rb][cb] */
    void *d_data = nullptr;
    float *d_scales = nullptr;
    g4_dmatrix dm = {}; /* every field, tiled included, zero unless set */
};

static void make_mat(mat &w, int rows, int cols) {
    w.rows = rows, w.cols = cols, w.rb = (rows + 127) / 128, w.cb = (cols + 127) / 128;
    const size_t n = (size_t)rows * cols;
    w.codes.resize(n);
    for (size_t i = 0; i < n; i += 8) { /* 8 random bytes per draw; a NaN code becomes +-448 */
        uint64_t r = rnd();
        for (size_t j = i; j < i + 8 && j < n; j++, r >>= 8) {
            const uint8_t c = (uint8_t)r;
            w.codes[j] = (c & 0x7f) == 0x7f ? c ^ 1 : c;
        }
    }
    w.scales.resize((size_t)w.rb * w.cb);
    for (auto &s : w.scales) s = (float)logu(1e-5, 1e-2);
    CK(cudaMalloc(&w.d_data, n));
    CK(cudaMemcpy(w.d_data, w.codes.data(), n, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&w.d_scales, w.scales.size() * sizeof(float)));
    CK(cudaMemcpy(w.d_scales, w.scales.data(), w.scales.size() * sizeof(float), cudaMemcpyHostToDevice));
    w.dm.fp8 = 1, w.dm.rows = rows, w.dm.cols = cols, w.dm.data = w.d_data, w.dm.scales = w.d_scales;
}

static void free_mat(mat &w) {
    CK(cudaFree(w.d_data));
    CK(cudaFree(w.d_scales));
}

/* x and its host quantization (what the kernel must produce) */
struct act {
    int M, K, KB;
    std::vector<float> x;   /* [M][K] */
    std::vector<float> qv;  /* [M][K] decoded E4M3 codes */
    std::vector<float> s;   /* [M][KB] */
};

static void make_act(act &a, int M, int K, bool zero_group) {
    a.M = M, a.K = K, a.KB = (K + 127) / 128;
    a.x.resize((size_t)M * K);
    for (int m = 0; m < M; m++)
        for (int kb = 0; kb < a.KB; kb++) {
            const double f = logu(0.05, 20.0);
            for (int k = kb * 128; k < std::min(K, kb * 128 + 128); k++) {
                const uint64_t r = rnd(); /* bits 11-63: magnitude, 1-10: outlier (~1%), 0: sign */
                double mag = (0.05 + (r >> 11) * (2.0 / 9007199254740992.0)) * f;
                if (((r >> 1) & 1023) < 10) mag *= 50.0;
                a.x[(size_t)m * K + k] = (float)(r & 1 ? mag : -mag);
            }
        }
    if (zero_group && M > 1 && a.KB > 1)
        for (int k = 128; k < std::min(K, 256); k++) a.x[(size_t)(M / 2) * K + k] = 0.0f;
    a.qv.resize(a.x.size());
    a.s.resize((size_t)M * a.KB);
    for (int m = 0; m < M; m++)
        for (int kb = 0; kb < a.KB; kb++) {
            const int k0 = kb * 128, k1 = std::min(K, k0 + 128);
            float amax = 0.0f;
            for (int k = k0; k < k1; k++) amax = std::max(amax, fabsf(a.x[(size_t)m * K + k]));
            const float s = amax > 0.0f ? amax / 448.0f : 1.0f;
            a.s[(size_t)m * a.KB + kb] = s;
            for (int k = k0; k < k1; k++) a.qv[(size_t)m * K + k] = g_e4m3[e4m3_enc(a.x[(size_t)m * K + k] / s)];
        }
}

static double gelu(double v) { return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }

/* Scale lookups for the reference: the intended layout and wrong ones (diagnostics). */
typedef std::function<double(int m, int kb)> xscale_fn;
typedef std::function<double(int nb, int kb)> wscale_fn;

/* f(0) .. f(n-1) on all cores (the float64 references are the slow part of this check). */
static void parallel_for(int n, const std::function<void(int)> &f) {
    const int nt = std::max(1, std::min(n, (int)std::thread::hardware_concurrency()));
    std::atomic<int> next(0);
    std::vector<std::thread> th;
    for (int t = 0; t < nt; t++)
        th.emplace_back([&]() {
            for (int i; (i = next++) < n;) f(i);
        });
    for (std::thread &t : th) t.join();
}

/* ref[i][m] for rows[i]: sum_kb xs(m,kb) ws(r/128,kb) sum_k q_x q_w (quant) and sum_k x w (exact). */
static void reference(const mat &w, const act &a, const std::vector<int> &rows, const xscale_fn &xs,
                      const wscale_fn &ws, std::vector<double> *refq, std::vector<double> *refx) {
    const int M = a.M, K = a.K, KB = a.KB;
    if (refq) refq->assign(rows.size() * M, 0.0);
    if (refx) refx->assign(rows.size() * M, 0.0);
    parallel_for((int)rows.size(), [&](int i) {
        std::vector<double> qw(K), dw(K);
        const int r = rows[i];
        for (int k = 0; k < K; k++) {
            qw[k] = g_e4m3[w.codes[(size_t)r * K + k]];
            dw[k] = qw[k] * (double)w.scales[(size_t)(r / 128) * w.cb + k / 128];
        }
        for (int m = 0; m < M; m++) {
            const float *qx = &a.qv[(size_t)m * K], *x = &a.x[(size_t)m * K];
            if (refq) {
                double t = 0;
                for (int kb = 0; kb < KB; kb++) {
                    double p = 0;
                    for (int k = kb * 128; k < std::min(K, kb * 128 + 128); k++) p += (double)qx[k] * qw[k];
                    t += p * xs(m, kb) * ws(r / 128, kb);
                }
                (*refq)[i * M + m] = t;
            }
            if (refx) {
                double t = 0;
                for (int k = 0; k < K; k++) t += (double)x[k] * dw[k];
                (*refx)[i * M + m] = t;
            }
        }
    });
}

static std::vector<double> geglu_ref(const std::vector<double> &g, const std::vector<double> &u) {
    std::vector<double> y(g.size());
    for (size_t i = 0; i < g.size(); i++) y[i] = gelu(g[i]) * u[i];
    return y;
}

/* ||y[rows] - ref|| / ||ref|| */
static double rel_err(const std::vector<float> &y, int N, int M, const std::vector<int> &rows,
                      const std::vector<double> &ref) {
    double num = 0, den = 0;
    for (size_t i = 0; i < rows.size(); i++)
        for (int m = 0; m < M; m++) {
            const double d = y[(size_t)m * N + rows[i]] - ref[i * M + m];
            num += d * d, den += ref[i * M + m] * ref[i * M + m];
        }
    double e = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    return e == e ? e : INFINITY;
}

/* Two runs of the same computation: equal up to 1e-6 relative (cuBLAS may pick a
 * split-K reduction whose order is not fixed); *bitwise says if they are identical. */
static bool same_result(const std::vector<float> &a, const std::vector<float> &b, bool *bitwise) {
    *bitwise = a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    if (*bitwise) return true;
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) {
        const double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    return a.size() == b.size() && num <= 1e-12 * den;
}

static std::vector<int> pick_rows(int N, int n) {
    std::vector<int> rows;
    if (n <= 0 || n >= N) {
        for (int r = 0; r < N; r++) rows.push_back(r);
        return rows;
    }
    const int edge[] = {0, 1, 63, 64, 127, 128, 129, N / 2, N - 129, N - 128, N - 65, N - 64, N - 2, N - 1};
    for (int r : edge)
        if (r >= 0 && r < N) rows.push_back(r);
    while ((int)rows.size() < n) rows.push_back((int)(rnd() % N));
    return rows;
}

struct result {
    char name[48];
    int M, N, K;
    bool geglu;
    double err_q, err_x, err_f16;
    bool ok;
    double us, tf, us_ref, tf_ref;
};
static std::vector<result> g_results;
static int g_pass, g_fail, g_refused;

static float median_ms(cudaStream_t st, const std::function<void()> &launch) {
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
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

/* One case; `timed`: also graph replay and timings against g4k_gemm. */
static void run_case(const char *name, int M, int N, int K, bool geglu, bool timed, int check_rows) {
    mat w, u;
    make_mat(w, N, K);
    if (geglu) make_mat(u, N, K);
    act a;
    make_act(a, M, K, !timed);
    const size_t ny = (size_t)M * N;
    float *dx, *dy, *dy2;
    CK(cudaMalloc(&dx, a.x.size() * sizeof(float)));
    CK(cudaMemcpy(dx, a.x.data(), a.x.size() * sizeof(float), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&dy, ny * sizeof(float)));
    CK(cudaMalloc(&dy2, ny * sizeof(float)));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    g4_stream gs = reinterpret_cast<g4_stream>(st);
    int rc_last = 0;
    auto launch = [&]() {
        rc_last = geglu ? g4k_gemm_w8a8_geglu(&w.dm, &u.dm, dy, dx, M, gs) : g4k_gemm_w8a8(&w.dm, dy, dx, M, gs);
    };
    auto launch_ref = [&]() {
        if (geglu) g4k_gemm_geglu(&w.dm, &u.dm, dy2, dx, M, gs);
        else g4k_gemm(&w.dm, dy2, dx, M, gs);
    };

    result res = {};
    snprintf(res.name, sizeof res.name, "%s", name);
    res.M = M, res.N = N, res.K = K, res.geglu = geglu;

    CK(cudaMemsetAsync(dy, 0xff, ny * sizeof(float), st));
    CK(cudaMemsetAsync(dy2, 0xff, ny * sizeof(float), st));
    launch();
    const int rc = rc_last;
    if (rc == -1 && !timed) { /* a small shape cuBLASLt has no algorithm for: the caller would use g4k_gemm */
        printf("%-24s M=%5d N=%6d K=%6d: refused, would fall back to g4k_gemm: %s\n", name, M, N, K,
               g4k_gemm_w8a8_error());
        g_refused++;
        CK(cudaStreamSynchronize(st));
    } else if (rc != 0) {
        printf("%-24s M=%5d N=%6d K=%6d: g4k_gemm_w8a8 returned %d: %s  FAIL\n", name, M, N, K, rc,
               g4k_gemm_w8a8_error());
        res.ok = false, res.err_q = res.err_x = res.err_f16 = INFINITY;
        g_results.push_back(res);
        g_fail++;
        CK(cudaStreamSynchronize(st));
    } else {
        launch_ref();
        CK(cudaGetLastError());
        CK(cudaStreamSynchronize(st));
        std::vector<float> y(ny), y2(ny);
        CK(cudaMemcpy(y.data(), dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(y2.data(), dy2, ny * sizeof(float), cudaMemcpyDeviceToHost));
        size_t unwritten = 0;
        for (size_t i = 0; i < ny; i++)
            if (!std::isfinite(y[i])) unwritten++;

        const std::vector<int> rows = pick_rows(N, check_rows);
        const int KB = a.KB;
        const xscale_fn xs_ok = [&](int m, int kb) { return (double)a.s[(size_t)m * KB + kb]; };
        const wscale_fn ws_w = [&](int nb, int kb) { return (double)w.scales[(size_t)nb * w.cb + kb]; };
        const wscale_fn ws_u = [&](int nb, int kb) { return (double)u.scales[(size_t)nb * u.cb + kb]; };
        std::vector<double> rq, rx, rq2, rx2;
        reference(w, a, rows, xs_ok, ws_w, &rq, &rx);
        if (geglu) {
            reference(u, a, rows, xs_ok, ws_u, &rq2, &rx2);
            rq = geglu_ref(rq, rq2), rx = geglu_ref(rx, rx2);
        }
        res.err_q = rel_err(y, N, M, rows, rq);
        res.err_x = rel_err(y, N, M, rows, rx);
        res.err_f16 = rel_err(y2, N, M, rows, rx);
        res.ok = unwritten == 0 && res.err_q < 1e-3 && res.err_x < 8e-2;
        printf("%-24s M=%5d N=%6d K=%6d%s rows=%zu  vs quant %.3e  vs exact %.3e  (g4k_gemm vs exact %.3e)"
               "  unwritten=%zu %s\n",
               name, M, N, K, geglu ? " geglu" : "      ", rows.size(), res.err_q, res.err_x, res.err_f16, unwritten,
               res.ok ? "ok" : "FAIL");

        /* diagnostics: which scale layout would explain the output? (plain GEMMs, a few rows) */
        if (!res.ok && !geglu) {
            const int M4 = (M + 3) & ~3, L4 = (KB + 3) & ~3, NB = w.rb;
            /* the buffers as the kernel writes them, read back with another indexing */
            auto xbuf = [&](size_t i) { /* xs[kb * M4 + m] */
                const int kb = (int)(i / M4), m = (int)(i % M4);
                return m < M && kb < KB ? (double)a.s[(size_t)m * KB + kb] : 1.0;
            };
            auto wbuf = [&](size_t i) { /* [nb][L4], zero padded (K % 512 == 0: the checkpoint layout itself) */
                const int nb = (int)(i / L4), kb = (int)(i % L4);
                return nb < NB && kb < KB ? (double)w.scales[(size_t)nb * w.cb + kb] : 0.0;
            };
            struct hyp {
                const char *what;
                xscale_fn xs;
                wscale_fn ws;
            } hyps[] = {
                {"x scales read K-major (xs[m*KB+kb])", [&](int m, int kb) { return xbuf((size_t)m * KB + kb); }, ws_w},
                {"w scales read with stride KB (not L4)", xs_ok, [&](int nb, int kb) { return wbuf((size_t)nb * KB + kb); }},
                {"w scales read N-major (ws[kb*NB+nb])", xs_ok, [&](int nb, int kb) { return wbuf((size_t)kb * NB + nb); }},
                {"both: x K-major and w N-major", [&](int m, int kb) { return xbuf((size_t)m * KB + kb); },
                 [&](int nb, int kb) { return wbuf((size_t)kb * NB + nb); }},
                {"no scales applied at all", [](int, int) { return 1.0; }, [](int, int) { return 1.0; }},
                {"x scales ignored", [](int, int) { return 1.0; }, ws_w},
                {"w scales ignored", xs_ok, [](int, int) { return 1.0; }},
            };
            std::vector<int> few(rows.begin(), rows.begin() + std::min<size_t>(rows.size(), 8));
            for (const hyp &h : hyps) {
                std::vector<double> rh;
                reference(w, a, few, h.xs, h.ws, &rh, nullptr);
                printf("    diagnosis: %-42s -> rel. error %.3e\n", h.what, rel_err(y, N, M, few, rh));
            }
        }

        if (timed && res.ok) {
            /* graph capture of one call, replayed: must reproduce the eager output bit for bit */
            cudaGraph_t graph;
            cudaGraphExec_t exec;
            CK(cudaMemsetAsync(dy, 0xff, ny * sizeof(float), st));
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
            launch();
            const int rc_cap = rc_last;
            CK(cudaStreamEndCapture(st, &graph));
            bool same = false, bitwise = false;
            if (rc_cap == 0) {
                CK(cudaGraphInstantiate(&exec, graph, 0));
                CK(cudaGraphLaunch(exec, st));
                CK(cudaStreamSynchronize(st));
                std::vector<float> yg(ny);
                CK(cudaMemcpy(yg.data(), dy, ny * sizeof(float), cudaMemcpyDeviceToHost));
                same = same_result(yg, y, &bitwise);
                CK(cudaGraphExecDestroy(exec));
            }
            CK(cudaGraphDestroy(graph));
            if (same && !bitwise) printf("    graph replay equal to 1e-6, not bit for bit\n");
            if (!same) {
                printf("    graph replay: %s  FAIL\n",
                       rc_cap ? g4k_gemm_w8a8_error() : "output differs from the eager call");
                res.ok = false;
            }
        }
        if (timed && res.ok) {
            const double flop = (geglu ? 4.0 : 2.0) * M * (double)N * K;
            res.us = 1e3 * median_ms(st, launch);
            res.tf = flop / (res.us * 1e-6) / 1e12;
            res.us_ref = 1e3 * median_ms(st, launch_ref);
            res.tf_ref = flop / (res.us_ref * 1e-6) / 1e12;
            CK(cudaStreamSynchronize(st));
            CK(cudaGetLastError());
            if (rc_last) {
                printf("    timed call returned %d: %s  FAIL\n", rc_last, g4k_gemm_w8a8_error());
                res.ok = false;
            } else {
                printf("    w8a8 %8.1f us %7.1f TFLOP/s   g4k_gemm %8.1f us %7.1f TFLOP/s   speed-up %.2fx\n", res.us,
                       res.tf, res.us_ref, res.tf_ref, res.us_ref / res.us);
            }
        }
        g_results.push_back(res);
        (res.ok ? g_pass : g_fail)++;
    }
    fflush(stdout);
    CK(cudaStreamDestroy(st));
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    CK(cudaFree(dy2));
    free_mat(w);
    if (geglu) free_mat(u);
}

/* g4k_gemm_w8a8_multi on q, k, v (one quantization of x): each output must equal the
 * single-matrix call (same plan per shape; to 1e-6) and the quantized reference;
 * also replayed from a graph, and timed against three single calls. */
static void run_multi(const char *name, int M, int K, const int *Ns, int n_mats) {
    mat w[3];
    g4_dmatrix dms[3];
    for (int i = 0; i < n_mats; i++) make_mat(w[i], Ns[i], K), dms[i] = w[i].dm;
    act a;
    make_act(a, M, K, false);
    float *dx, *dy[3], *dz[3];
    CK(cudaMalloc(&dx, a.x.size() * sizeof(float)));
    CK(cudaMemcpy(dx, a.x.data(), a.x.size() * sizeof(float), cudaMemcpyHostToDevice));
    for (int i = 0; i < n_mats; i++) {
        CK(cudaMalloc(&dy[i], (size_t)M * Ns[i] * sizeof(float)));
        CK(cudaMalloc(&dz[i], (size_t)M * Ns[i] * sizeof(float)));
        CK(cudaMemset(dy[i], 0xff, (size_t)M * Ns[i] * sizeof(float)));
    }
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    g4_stream gs = reinterpret_cast<g4_stream>(st);
    int rc = 0;
    auto multi = [&]() { rc |= g4k_gemm_w8a8_multi(dms, dy, n_mats, dx, M, gs); };
    auto singles = [&]() {
        for (int i = 0; i < n_mats; i++) rc |= g4k_gemm_w8a8(&dms[i], dz[i], dx, M, gs);
    };
    multi();
    singles();
    CK(cudaStreamSynchronize(st));
    bool ok = rc == 0;
    const char *why = rc ? g4k_gemm_w8a8_error() : "";
    double worst = 0;
    std::vector<float> y, z;
    for (int i = 0; ok && i < n_mats; i++) {
        const size_t n = (size_t)M * Ns[i];
        y.resize(n), z.resize(n);
        CK(cudaMemcpy(y.data(), dy[i], n * sizeof(float), cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(z.data(), dz[i], n * sizeof(float), cudaMemcpyDeviceToHost));
        bool bitwise;
        if (!same_result(y, z, &bitwise)) ok = false, why = "multi differs from single calls";
        const std::vector<int> rows = pick_rows(Ns[i], 16);
        const int KB = a.KB;
        std::vector<double> rq;
        reference(w[i], a, rows, [&](int m, int kb) { return (double)a.s[(size_t)m * KB + kb]; },
                  [&](int nb, int kb) { return (double)w[i].scales[(size_t)nb * w[i].cb + kb]; }, &rq, nullptr);
        worst = std::max(worst, rel_err(y, Ns[i], M, rows, rq));
    }
    if (worst >= 1e-3) ok = false, why = "error against the quantized reference";
    if (ok) { /* graph replay */
        for (int i = 0; i < n_mats; i++) CK(cudaMemsetAsync(dy[i], 0xff, (size_t)M * Ns[i] * sizeof(float), st));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
        multi();
        CK(cudaStreamEndCapture(st, &graph));
        if (rc == 0) {
            CK(cudaGraphInstantiate(&exec, graph, 0));
            CK(cudaGraphLaunch(exec, st));
            CK(cudaStreamSynchronize(st));
            for (int i = 0; i < n_mats; i++) {
                const size_t n = (size_t)M * Ns[i];
                y.resize(n), z.resize(n);
                CK(cudaMemcpy(y.data(), dy[i], n * sizeof(float), cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(z.data(), dz[i], n * sizeof(float), cudaMemcpyDeviceToHost));
                bool bitwise;
                if (!same_result(y, z, &bitwise)) ok = false, why = "graph replay differs";
            }
            CK(cudaGraphExecDestroy(exec));
        } else {
            ok = false, why = g4k_gemm_w8a8_error();
        }
        CK(cudaGraphDestroy(graph));
    }
    printf("%-24s M=%5d K=%6d N=%d+%d+%d: vs quant %.3e, multi == singles == graph replay: %s %s\n", name, M, K,
           Ns[0], n_mats > 1 ? Ns[1] : 0, n_mats > 2 ? Ns[2] : 0, worst, ok ? "yes" : why, ok ? "ok" : "FAIL");
    if (ok) {
        const float tm = median_ms(st, multi), ts = median_ms(st, singles);
        double flop = 0;
        for (int i = 0; i < n_mats; i++) flop += 2.0 * M * (double)Ns[i] * K;
        printf("    multi %8.1f us %7.1f TFLOP/s   3 singles %8.1f us %7.1f TFLOP/s\n", 1e3 * tm,
               flop / (tm * 1e-3) / 1e12, 1e3 * ts, flop / (ts * 1e-3) / 1e12);
        CK(cudaStreamSynchronize(st));
        if (rc) ok = false;
    }
    (ok ? g_pass : g_fail)++;
    fflush(stdout);
    CK(cudaStreamDestroy(st));
    CK(cudaFree(dx));
    for (int i = 0; i < n_mats; i++) {
        CK(cudaFree(dy[i]));
        CK(cudaFree(dz[i]));
        free_mat(w[i]);
    }
}

/* A shape the library must refuse cleanly (-1, nothing written). */
static void run_refused(const char *name, int M, int N, int K) {
    mat w;
    make_mat(w, N, K);
    float *dx, *dy;
    CK(cudaMalloc(&dx, (size_t)M * K * sizeof(float)));
    CK(cudaMemset(dx, 0, (size_t)M * K * sizeof(float)));
    CK(cudaMalloc(&dy, (size_t)M * N * sizeof(float)));
    const int rc = g4k_gemm_w8a8(&w.dm, dy, dx, M, nullptr);
    CK(cudaDeviceSynchronize());
    const bool ok = rc == -1;
    printf("%-24s M=%5d N=%6d K=%6d: returned %d (%s)  %s\n", name, M, N, K, rc, rc ? g4k_gemm_w8a8_error() : "",
           ok ? "ok" : "FAIL");
    (ok ? g_pass : g_fail)++;
    CK(cudaFree(dx));
    CK(cudaFree(dy));
    free_mat(w);
}

int main(int argc, char **argv) {
    const bool quick = argc > 1 && !strcmp(argv[1], "--quick");
    e4m3_init();
    /* the host encoder against the device conversion's definition on a few known points */
    if (e4m3_enc(448.0f) != 0x7e || e4m3_enc(1000.0f) != 0x7e || e4m3_enc(-1.0f) != 0xb8 ||
        e4m3_enc(0.0009765625f) != 0x00 || e4m3_enc(0.0029296875f) != 0x02 || e4m3_enc(17.0f) != 0x58 ||
        e4m3_enc(19.0f) != 0x5a) {
        printf("host E4M3 encoder self-test failed\n");
        return 1;
    }
    int dev = 0;
    CK(cudaSetDevice(dev));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("device: %s, %d SMs, cc %d.%d; cuBLASLt %zu (built against %d)\n", prop.name, prop.multiProcessorCount,
           prop.major, prop.minor, cublasLtGetVersion(), CUBLAS_VERSION);

    /* small shapes: all rows checked; M % 4 != 0 (padded tokens + copy), K/128 % 4 != 0 (padded
     * weight scales), an all-zero activation group (scale 1) */
    run_case("small M=1", 1, 256, 256, false, false, 0);
    run_case("small M=5 KB=5", 5, 384, 640, false, false, 0);
    run_case("small M=8 KB=4", 8, 128, 512, false, false, 0);
    run_case("small M=30 KB=3", 30, 384, 384, false, false, 0);
    run_case("small geglu M=7", 7, 256, 384, true, false, 0);
    run_case("small geglu M=64", 64, 384, 512, true, false, 0);
    run_refused("refused K=200", 16, 256, 200);
    run_refused("refused K=320", 16, 256, 320);
    run_refused("refused N=260", 16, 260, 256);

    /* the 12B shapes */
    const int check = quick ? 16 : 48;
    const int Ms[] = {17, 145, 1024};
    for (int M : Ms) {
        if (quick && M == 1024) continue;
        char nm[48];
        snprintf(nm, sizeof nm, "12B q %d", M), run_case(nm, M, 4096, 3840, false, true, check);
        snprintf(nm, sizeof nm, "12B k/v %d", M), run_case(nm, M, 2048, 3840, false, true, check);
        snprintf(nm, sizeof nm, "12B o %d", M), run_case(nm, M, 3840, 4096, false, true, check);
        snprintf(nm, sizeof nm, "12B gate/up geglu %d", M), run_case(nm, M, 15360, 3840, true, true, check);
        snprintf(nm, sizeof nm, "12B down %d", M), run_case(nm, M, 3840, 15360, false, true, check);
        const int qkv[3] = {4096, 2048, 2048};
        snprintf(nm, sizeof nm, "12B q+k+v multi %d", M), run_multi(nm, M, 3840, qkv, 3);
    }

    printf("\n%-24s %5s %6s %6s %10s %10s %10s %5s %9s %8s %9s %8s\n", "case", "M", "N", "K", "vs quant", "vs exact",
           "f16 exact", "ok", "w8a8 us", "TFLOP/s", "gemm us", "TFLOP/s");
    for (const result &r : g_results) {
        printf("%-24s %5d %6d %6d %10.3e %10.3e %10.3e %5s", r.name, r.M, r.N, r.K, r.err_q, r.err_x, r.err_f16,
               r.ok ? "ok" : "FAIL");
        if (r.us > 0) printf(" %9.1f %8.1f %9.1f %8.1f", r.us, r.tf, r.us_ref, r.tf_ref);
        printf("\n");
    }
    g4k_gemm_w8a8_release();
    g4k_gemm_release();
    if (g_refused) printf("%d small shapes refused by cuBLASLt (not failures: g4k_gemm takes them)\n", g_refused);
    printf("w8a8_check: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
