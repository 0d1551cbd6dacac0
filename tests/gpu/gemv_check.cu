/* GPU check of the decode GEMVs (src/cuda/gemv.cu and gemv_tc.cu) through
 * their entry points: g4k_gemv_split (1-3 matrices, split-K parts added up
 * here), g4k_gemv_geglu and g4k_lm_head (BF16, softcap). The default run
 * takes the tensor-core path where it applies (M <= 4 FP8 while x fits in
 * shared memory, M <= 2 BF16, rows a multiple of 16) and the CUDA-core
 * kernels elsewhere; G4_GEMV=simt checks
 * the CUDA-core kernels on every case. Every FP8 case with whole 16-row tiles
 * runs again on a tiled copy of the weights (kernels.h, g4k_retile): same
 * bound, and where the row-major run surely took the tensor-core path in one
 * pass too (M <= 2, not G4_GEMV=simt) bitwise the same outputs.
 *
 * Each case: random FP8 codes (never the NaN codes 0x7F/0xFF) with varied
 * 128x128 block scales, or random BF16 weights; random x, never zero, with a
 * few outliers up to +-300; y poisoned with NaN. After the call every output
 * must be finite and ||y - ref|| / ||ref|| < 2e-5 against a float64 CPU
 * reference.
 *
 * The bound: both paths are exact on the weight side. The tensor-core path
 * keeps x as two FP16 parts (hi + lo: 22 significant bits, relative error
 * <= 2^-22 per element, ~2.4e-7) or three BF16 parts (24 bits); the rest is
 * fp32 accumulation in another order than the reference's, ~sqrt(K) * 2^-24
 * relative for the dot products (7e-6 at K = 15360 in the worst case of
 * aligned errors, ~1e-6 typically). 2e-5 is ~3x that worst case; the x -> FP16
 * rounding alone (the prefill GEMM's 2e-4) would fail it. GeGLU outputs
 * carry gelu's condition number (~1-2).
 * Also: a call captured in a CUDA graph gives bitwise the direct call's y.
 * Output: "check ..." lines, last "gemv_check: N passed, N failed" (exit 1 if any failed).
 * Build: make build/tests/gpu/gemv_check */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "cuda/kernels.h"

#define CHECK_SEED 0x2545F4914F6CDD1Dull
#include "check.cuh"

static int g_pass, g_fail;

/* A host matrix with its device copy. */
struct mat {
    int fp8, rows, cols;
    std::vector<uint8_t> codes;   /* FP8 */
    std::vector<uint16_t> halves; /* BF16 */
    std::vector<float> scales;
    g4_dmatrix d;
    double at(int r, int c) const {
        if (!fp8) return bf16(halves[(size_t)r * cols + c]);
        return e4m3(codes[(size_t)r * cols + c]) * scales[(size_t)(r / 128) * ((cols + 127) / 128) + c / 128];
    }
};

static mat make_mat(int fp8, int rows, int cols) {
    mat m;
    m.fp8 = fp8, m.rows = rows, m.cols = cols;
    void *data = nullptr;
    float *sc = nullptr;
    if (fp8) {
        m.codes.resize((size_t)rows * cols);
        for (auto &c : m.codes) {
            c = (uint8_t)rnd();
            if ((c & 0x7f) == 0x7f || (c & 0x7f) == 0) c ^= 0x31; /* no NaN, no zero */
        }
        m.scales.resize((size_t)((rows + 127) / 128) * ((cols + 127) / 128));
        for (auto &s : m.scales) s = (float)((0.5 + urand()) * 1e-3);
        CK(cudaMalloc(&data, m.codes.size()));
        CK(cudaMemcpy(data, m.codes.data(), m.codes.size(), cudaMemcpyHostToDevice));
        CK(cudaMalloc(&sc, m.scales.size() * 4));
        CK(cudaMemcpy(sc, m.scales.data(), m.scales.size() * 4, cudaMemcpyHostToDevice));
    } else {
        m.halves.resize((size_t)rows * cols);
        for (auto &h : m.halves) {
            const float f = (float)((urand() - 0.5) * 0.1) + (urand() < 0.5 ? 1e-3f : -1e-3f);
            uint32_t u;
            memcpy(&u, &f, 4);
            h = (uint16_t)(u >> 16);
        }
        CK(cudaMalloc(&data, m.halves.size() * 2));
        CK(cudaMemcpy(data, m.halves.data(), m.halves.size() * 2, cudaMemcpyHostToDevice));
    }
    m.d = {fp8, rows, cols, data, sc};
    return m;
}

/* FP8 layer matrices that g4 would tile (rows % 16 == 0, cols % 64 == 0). */
static bool tileable(const mat &m) { return m.fp8 && m.rows % 16 == 0 && m.cols % 64 == 0; }

/* A tiled copy of m (rows % 16 == 0, row bytes % 64 == 0); free its data with cudaFree. */
static g4_dmatrix tiled_copy(const mat &m) {
    const int row_bytes = m.cols * (m.fp8 ? 1 : 2);
    g4_dmatrix t = m.d;
    void *p;
    CK(cudaMalloc(&p, (size_t)m.rows * row_bytes));
    g4k_retile(p, m.d.data, m.rows, row_bytes, 0);
    t.data = p, t.tiled = 1;
    return t;
}

static bool tc_on() {
    const char *e = getenv("G4_GEMV");
    return !(e && !strcmp(e, "simt"));
}

/* Tiled and row-major outputs bitwise equal: asked only where both runs took
 * the tensor cores in one pass (M <= 2, not G4_GEMV=simt), the same arithmetic. */
static void check_bitwise(const char *what, int M, bool equal) {
    if (M > 2 || !tc_on()) return;
    printf("check %s tiled == row-major bitwise: %s\n", what, equal ? "ok" : "FAIL");
    equal ? g_pass++ : g_fail++;
}

static void free_mat(mat &m) {
    cudaFree(const_cast<void *>(m.d.data));
    cudaFree(const_cast<float *>(m.d.scales));
}

static std::vector<float> make_x(int M, int cols) {
    std::vector<float> x((size_t)M * cols);
    for (auto &v : x) {
        v = (float)(urand() * 2 - 1);
        if (fabsf(v) < 1e-3f) v = 0.5f;
        if (urand() < 0.002) v *= 300.0f; /* outliers */
    }
    return x;
}

static float *to_dev(const std::vector<float> &v) {
    float *p;
    CK(cudaMalloc(&p, v.size() * 4));
    CK(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    return p;
}

static float *poisoned(size_t n) {
    float *p;
    CK(cudaMalloc(&p, n * 4));
    CK(cudaMemset(p, 0xff, n * 4)); /* NaN */
    return p;
}

static double dot(const mat &w, int r, const float *x) {
    double s = 0;
    for (int c = 0; c < w.cols; c++) s += w.at(r, c) * x[c];
    return s;
}

/* rows to check: all for small matrices, else a spread with tile and block edges */
static std::vector<int> rows_to_check(int rows) {
    std::vector<int> r;
    if (rows <= 1024) {
        for (int i = 0; i < rows; i++) r.push_back(i);
        return r;
    }
    for (int i = 0; i < rows; i += rows / 61) r.push_back(i);
    const int edges[] = {0, 7, 8, 15, 16, 127, 128, rows - 17, rows - 9, rows - 8, rows - 1};
    for (int e : edges) r.push_back(e);
    return r;
}

static void report(const char *what, double num, double den, bool finite) {
    const double err = den > 0 ? sqrt(num / den) : sqrt(num);
    const bool ok = finite && err < 2e-5;
    printf("check %-58s err %.2e %s\n", what, err, ok ? "ok" : "FAIL");
    ok ? g_pass++ : g_fail++;
}

/* Runs g4k_gemv_split on d; the outputs with the parts added up, and the parts count in *parts. */
static std::vector<std::vector<double>> run_plain(const std::vector<g4_dmatrix> &d, const float *dx, int M, int splits,
                                                  int *parts) {
    std::vector<float *> dy;
    for (auto &m : d) dy.push_back(poisoned((size_t)splits * M * m.rows));
    *parts = g4k_gemv_split(d.data(), dy.data(), (int)d.size(), dx, M, splits, 0);
    CK(cudaDeviceSynchronize());
    std::vector<std::vector<double>> out;
    for (size_t i = 0; i < d.size(); i++) {
        const int n = M * d[i].rows;
        std::vector<float> y((size_t)(*parts > 0 ? *parts : 1) * n);
        CK(cudaMemcpy(y.data(), dy[i], y.size() * 4, cudaMemcpyDeviceToHost));
        std::vector<double> sum(n, 0.0);
        for (int p = 0; p < *parts; p++)
            for (int j = 0; j < n; j++) sum[j] += y[(size_t)p * n + j];
        out.push_back(sum);
        cudaFree(dy[i]);
    }
    return out;
}

/* Plain: n_mats matrices of the same cols, through g4k_gemv_split with `splits`;
 * row-major, then tiled where the shapes allow. */
static void check_plain(int fp8, const std::vector<int> &rows, int cols, int M, int splits) {
    std::vector<mat> w;
    for (int r : rows) w.push_back(make_mat(fp8, r, cols));
    const std::vector<float> x = make_x(M, cols);
    float *dx = to_dev(x);
    bool tile = true;
    std::vector<g4_dmatrix> d, dt;
    for (auto &m : w) d.push_back(m.d), tile = tile && tileable(m);
    if (tile)
        for (auto &m : w) dt.push_back(tiled_copy(m));
    std::vector<std::vector<double>> y_rows;
    int parts_rows = 0;
    for (int layout = 0; layout < (tile ? 2 : 1); layout++) {
        int parts = 0;
        const auto y = run_plain(layout ? dt : d, dx, M, splits, &parts);
        double num = 0, den = 0;
        bool finite = parts >= 1 && parts <= splits;
        for (size_t i = 0; i < w.size(); i++)
            for (int r : rows_to_check(w[i].rows))
                for (int m = 0; m < M; m++) {
                    const double v = y[i][(size_t)m * w[i].rows + r], ref = dot(w[i], r, &x[(size_t)m * cols]);
                    finite = finite && std::isfinite(v);
                    num += (v - ref) * (v - ref), den += ref * ref;
                }
        char what[128];
        snprintf(what, sizeof what, "%s%s %d mats rows %d.. cols %d M %d splits %d (parts %d)", fp8 ? "fp8" : "bf16",
                 layout ? " tiled" : "", (int)w.size(), rows[0], cols, M, splits, parts);
        report(what, num, den, finite);
        if (!layout) y_rows = y, parts_rows = parts;
        else {
            snprintf(what, sizeof what, "%d mats rows %d.. cols %d M %d", (int)w.size(), rows[0], cols, M);
            check_bitwise(what, M, y == y_rows && parts == parts_rows);
        }
    }
    for (auto &m : dt) cudaFree(const_cast<void *>(m.data));
    for (auto &m : w) free_mat(m);
    cudaFree(dx);
}

static double gelu(double v) { return 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }

static void check_geglu(int rows, int cols, int M) {
    mat gate = make_mat(1, rows, cols), up = make_mat(1, rows, cols);
    const std::vector<float> x = make_x(M, cols);
    float *dx = to_dev(x), *dy = poisoned((size_t)M * rows);
    const bool tile = tileable(gate);
    g4_dmatrix tg = {}, tu = {};
    if (tile) tg = tiled_copy(gate), tu = tiled_copy(up);
    std::vector<float> y_rows;
    for (int layout = 0; layout < (tile ? 2 : 1); layout++) {
        CK(cudaMemset(dy, 0xff, sizeof(float) * M * rows));
        if (layout) g4k_gemv_geglu(&tg, &tu, dy, dx, M, 0);
        else g4k_gemv_geglu(&gate.d, &up.d, dy, dx, M, 0);
        CK(cudaDeviceSynchronize());
        std::vector<float> y((size_t)M * rows);
        CK(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        bool finite = true;
        for (int r : rows_to_check(rows))
            for (int m = 0; m < M; m++) {
                const double ref = gelu(dot(gate, r, &x[(size_t)m * cols])) * dot(up, r, &x[(size_t)m * cols]);
                const double v = y[(size_t)m * rows + r];
                finite = finite && std::isfinite(v);
                num += (v - ref) * (v - ref), den += ref * ref;
            }
        char what[128];
        snprintf(what, sizeof what, "geglu fp8%s rows %d cols %d M %d", layout ? " tiled" : "", rows, cols, M);
        report(what, num, den, finite);
        if (!layout) y_rows = y;
        else {
            snprintf(what, sizeof what, "geglu rows %d cols %d M %d", rows, cols, M);
            check_bitwise(what, M, y == y_rows);
        }
    }
    if (tile) cudaFree(const_cast<void *>(tg.data)), cudaFree(const_cast<void *>(tu.data));
    free_mat(gate), free_mat(up);
    cudaFree(dx), cudaFree(dy);
}

static void check_head(int vocab, int n, int M, float cap) {
    mat e = make_mat(0, vocab, n);
    std::vector<float> x = make_x(M, n);
    for (auto &v : x) v *= 20.0f; /* logits of a few tens: the softcap bends them */
    float *dx = to_dev(x), *dy = poisoned((size_t)M * vocab);
    const g4_dmatrix tiled = tiled_copy(e); /* the embedding as g4 uploads it, and row-major */
    std::vector<float> y_rows;
    for (int layout = 0; layout < 2; layout++) {
        CK(cudaMemset(dy, 0xff, sizeof(float) * M * vocab));
        g4k_lm_head(dy, dx, layout ? &tiled : &e.d, M, cap, 0);
        CK(cudaDeviceSynchronize());
        std::vector<float> y((size_t)M * vocab);
        CK(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
        double num = 0, den = 0;
        bool finite = true;
        for (int r : rows_to_check(vocab))
            for (int m = 0; m < M; m++) {
                double ref = dot(e, r, &x[(size_t)m * n]);
                if (cap > 0) ref = cap * tanh(ref / cap);
                const double v = y[(size_t)m * vocab + r];
                finite = finite && std::isfinite(v);
                num += (v - ref) * (v - ref), den += ref * ref;
            }
        char what[128];
        snprintf(what, sizeof what, "lm head bf16%s vocab %d n %d M %d cap %g", layout ? " tiled" : "", vocab, n, M, cap);
        report(what, num, den, finite);
        if (!layout) y_rows = y;
        else {
            snprintf(what, sizeof what, "lm head vocab %d n %d M %d", vocab, n, M);
            check_bitwise(what, M, y == y_rows);
        }
    }
    cudaFree(const_cast<void *>(tiled.data));
    free_mat(e);
    cudaFree(dx), cudaFree(dy);
}

/* The decode step runs inside a CUDA graph: replaying a captured call gives the same bits.
 * Through g4k_gemv_split with 4 splits, as decode runs o and down (the CUDA-core kernels
 * write 4 parts; the tensor-core ones whole sums, 1 part). */
static void check_graph(int rows, int cols, bool tiled) {
    mat w = make_mat(1, rows, cols);
    g4_dmatrix d = tiled ? tiled_copy(w) : w.d;
    const std::vector<float> x = make_x(1, cols);
    float *dx = to_dev(x), *y1 = poisoned(4 * rows), *y2 = poisoned(4 * rows);
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    const int parts = g4k_gemv_split(&d, &y1, 1, dx, 1, 4, s);
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    g4k_gemv_split(&d, &y2, 1, dx, 1, 4, s);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaStreamSynchronize(s));
    const bool parts_ok = parts >= 1 && parts <= 4;
    const size_t n = (size_t)(parts_ok ? parts : 1) * rows;
    std::vector<float> a(n), b(n);
    CK(cudaMemcpy(a.data(), y1, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), y2, n * 4, cudaMemcpyDeviceToHost));
    const bool ok = parts_ok && memcmp(a.data(), b.data(), n * 4) == 0;
    printf("check graph replay == direct call, %s rows %d cols %d (parts %d): %s\n", tiled ? "tiled" : "row-major", rows,
           cols, parts, ok ? "ok" : "FAIL");
    ok ? g_pass++ : g_fail++;
    cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaStreamDestroy(s);
    if (tiled) cudaFree(const_cast<void *>(d.data));
    free_mat(w);
    cudaFree(dx), cudaFree(y1), cudaFree(y2);
}

int main() {
    /* small shapes, every M, including widths that end mid scale block and
     * rows that are not a multiple of 16 (CUDA-core path) */
    for (int M = 1; M <= 8; M++) {
        check_plain(1, {64}, 128, M, 1);
        check_plain(1, {48}, 192, M, 1);
        check_plain(1, {32, 16, 16}, 256, M, 1);
        check_plain(1, {40}, 128, M, 1);
        check_plain(0, {96}, 96, M, 1);
        check_geglu(64, 256, M);
        check_head(256, 128, M, 30.0f);
    }
    /* the 12B's decode shapes */
    for (int M = 1; M <= 2; M++) {
        check_plain(1, {4096, 2048, 2048}, 3840, M, 1); /* sliding q/k/v */
        check_plain(1, {8192, 512}, 3840, M, 1);        /* full q/k (k == v) */
        check_plain(1, {3840}, 4096, M, 4);             /* o */
        check_plain(1, {3840}, 15360, M, 4);            /* down */
        check_geglu(15360, 3840, M);
        check_head(32768, 3840, M, 30.0f);
        check_head(32768, 3840, M, 0.0f);
    }
    check_plain(1, {3840}, 15360, 4, 4);
    /* more groups of tiles than resident blocks (8 tiles a block at these widths: 320 groups), so
     * blocks take later tiles, whose block scales each warp stages after the first tile's; 192
     * columns end mid scale block */
    for (int M = 1; M <= 2; M++) {
        check_plain(1, {40960}, 192, M, 1);
        check_geglu(40960, 192, M);
        check_geglu(40960, 256, M);
    }
    for (int tiled = 0; tiled < 2; tiled++) {
        check_graph(3840, 15360, tiled);
        check_graph(15360, 3840, tiled);
    }
    printf("gemv_check: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
