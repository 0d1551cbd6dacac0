/* GPU check and timing of the attention kernels (src/cuda/attention*.cu):
 * g4k_attention_decode (split-K decode with the q/k/v post-processing fused in)
 * and g4k_qkv_post + g4k_attention (prefill), against a host reference written
 * here from model.md §2.4-2.5 (the same steps as src/cpu/forward.c).
 *
 * Each case: a KV cache of random values (every row, also rows the kernels must
 * not read), random raw q/k/v rows of random scale (for k_eq_v layers v = the
 * raw k), q_norm weights in [0.05, 0.2] and k_norm in [0.5, 1.5] (scores of a
 * few units, so the softmax is neither flat nor one-hot); o and the decode
 * scratch are poisoned with NaN first. Checked after the run:
 *  - the new K/V rows in the cache equal the host's post-processing of the raw
 *    rows, rounded through the cache dtype, to within one step of that dtype
 *    (the GPU's fp32 norm may round a value at a tie the other way) + 3e-3
 *    (device and host powf may differ by an ulp in RoPE's inv_freq, which at
 *    position 8192 moves the angle by up to ~1e-3 rad; values are O(1));
 *  - no other byte of the cache changed;
 *  - o against an fp64 attention over the host cache, the new keys taken as the
 *    GPU wrote them: max |o - ref| <= TOL. The inputs to the reference differ
 *    from the GPU's only by fp32 rounding in q's norm and RoPE (the RoPE angle
 *    pos * inv_freq alone carries ~5e-4 rad of rounding at position 8192), so
 *    errors of 1e-5..1e-3 are expected; TOL = 5e-3 with |o| ~ 1.
 * Prefill cases at pos0 1000 read q, k and v packed in one matrix, as the fused
 * q/k/v GEMM leaves them, the others from three buffers.
 * Shapes: the 12B's sliding (16 q heads, 8 KV heads, head_dim 256, window 1024,
 * with ring = window + 512 and linear) and full layers (1 KV head, head_dim 512,
 * k_eq_v, partial RoPE), plus head_dim 128 (the decode kernel's widest query
 * chunk) and two small test-model shapes (head_dim 32 and 64: fallback paths).
 * Then the median of 50 timed launches (after warm-up, CUDA events) of the
 * decode launcher (default path, v2: the splits merged by the last block;
 * G4_DECODE_ATTN=v2merge, the same kernel, then a merge launch; G4_DECODE_ATTN=v1, the older
 * two-launch path), the old two-kernel path, and the prefill kernel (the tensor-core one,
 * and in parentheses the fp32 SIMT one it replaced; an F32 cache takes the SIMT
 * kernel in both unless G4_PREFILL_ATTN=tc). The whole check runs on another
 * decode path when started with G4_DECODE_ATTN=v1 or v2merge;
 * G4_PREFILL_ATTN=simt runs every check and timing on the SIMT prefill kernel;
 * G4_PREFILL_ATTN=tc puts F32 caches on the tensor-core one too.
 *
 * Build: make build/tests/gpu/attention_check; run: build/tests/gpu/attention_check [--quick]
 * (--quick: contexts 145 and 1025 only, no 512-token chunks, no timings: for
 * compute-sanitizer --tool memcheck; --prefill-tc: only its tensor-core prefill cases,
 * for --tool racecheck; --timings: only the timings, no checks).
 * Last line: "attention_check: N passed, N failed"; exit status 1 on any failure. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "cuda/kernels.h"

#define CHECK_SEED 0x9E3779B97F4A7C15ull
#include "check.cuh"
#include "util/numerics.h"

static const double TOL = 5e-3;
static const float KV_SCALE = 1.0f / 64; /* FP8 cache scale: |x| < 28 fits */

static float urand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 40) * (1.0 / 16777216.0)); }


/* Run f(i) for i < n on every core. */
template <typename F>
static void parallel_for(int n, F f) {
    int nt = (int)std::thread::hardware_concurrency();
    nt = nt < 1 ? 1 : nt > 64 ? 64 : nt;
    std::vector<std::thread> th;
    for (int t = 0; t < nt; t++)
        th.emplace_back([=, &f] {
            for (int i = t; i < n; i += nt) f(i);
        });
    for (auto &x : th) x.join();
}

struct kind {
    const char *name;
    int n_heads, n_kv, hd, window, rope_pairs;
    float theta;
    bool k_eq_v;
};
static const kind SLIDING = {"sliding hd256", 16, 8, 256, 1024, 128, 1e4f, false};
static const kind FULL = {"full hd512", 16, 1, 512, 0, 64, 1e6f, true};
static const kind MID = {"hd128 gqa4", 8, 2, 128, 64, 64, 1e4f, false};
static const kind NARROW = {"hd128 window 16", 8, 2, 128, 16, 64, 1e4f, false}; /* a window inside one key tile */
static const kind SMALL_S = {"small hd32", 4, 2, 32, 8, 16, 1e4f, false};
static const kind SMALL_F = {"small hd64 full", 4, 1, 64, 0, 8, 1e6f, true};

static const char *DT_NAME[3] = {"f32", "bf16", "fp8"};
static size_t elem(int dt) { return dt == G4K_KV_F32 ? 4 : dt == G4K_KV_BF16 ? 2 : 1; }

/* Cache element <-> float, as src/engine/kv_cache.c does it. */
static float kv_get(const std::vector<uint8_t> &c, int dt, size_t i, float scale) {
    if (dt == G4K_KV_F32) {
        float f;
        memcpy(&f, &c[4 * i], 4);
        return f;
    }
    if (dt == G4K_KV_BF16) {
        uint16_t b;
        memcpy(&b, &c[2 * i], 2);
        return g4_bf16_to_f32(b);
    }
    return (float)e4m3(c[i]) * scale; /* exact in float */
}
static void kv_put(std::vector<uint8_t> &c, int dt, size_t i, float x, float scale) {
    if (dt == G4K_KV_F32) memcpy(&c[4 * i], &x, 4);
    else if (dt == G4K_KV_BF16) {
        const uint16_t b = g4_f32_to_bf16(x);
        memcpy(&c[2 * i], &b, 2);
    } else c[i] = g4_f32_to_fp8(x / scale);
}
static float kv_round(int dt, float x, float scale) {
    std::vector<uint8_t> t(4);
    kv_put(t, dt, 0, x, scale);
    return kv_get(t, dt, 0, scale);
}

/* cpu_rmsnorm and cpu_rope (src/cpu/ops.c). */
static void host_rmsnorm(float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) x[i] = x[i] * inv * (w ? w[i] : 1.0f);
}
static void host_rope(float *x, int hd, int pairs, float theta, int pos) {
    const int half = hd / 2;
    for (int i = 0; i < pairs; i++) {
        const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
        const float angle = (float)pos * inv_freq, c = cosf(angle), s = sinf(angle);
        const float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

/* A cache of random values (uniform in [-2, 2], through the dtype) per
 * (shape, dtype, rows, K or V), made once and reused by every case. */
#include <map>
#include <tuple>
static std::map<std::tuple<int, int, int, int, int>, std::vector<uint8_t>> g_caches;
static const std::vector<uint8_t> &pristine_cache(const kind &k, int dt, int rows, int which, float scale) {
    const auto key = std::make_tuple(k.n_kv, k.hd, dt, rows, which);
    auto it = g_caches.find(key);
    if (it != g_caches.end()) return it->second;
    const size_t n = (size_t)rows * k.n_kv * k.hd;
    std::vector<uint8_t> c(n * elem(dt));
    for (size_t i = 0; i < n; i++) kv_put(c, dt, i, urand(-2, 2), scale);
    return g_caches[key] = std::move(c);
}

/* Device buffers, grown on demand. */
struct dbuf {
    void *p = nullptr;
    size_t n = 0;
    void *get(size_t bytes) {
        if (bytes > n) {
            if (p) CK(cudaFree(p));
            CK(cudaMalloc(&p, bytes));
            n = bytes;
        }
        return p;
    }
    void release() {
        if (p) CK(cudaFree(p));
        p = nullptr, n = 0;
    }
};
static dbuf d_q, d_k, d_v, d_o, d_kc, d_vc, d_qn, d_kn, d_scr, d_pos;

static int n_pass = 0, n_fail = 0;
static const char *g_path; /* G4_DECODE_ATTN as the run started (v1: the two-launch decode path) */
static cudaStream_t g_s; /* every launch (PDL wants a real stream) */
static const int MAX_CONTEXT = 8200;

/* g4k_attention_decode's scratch for M tokens: the partial results poisoned with NaN (a read of
 * one never written shows), the arrival tickets zero, as the contract asks. */
static float *decode_scratch(const g4k_attn &a, int M) {
    const size_t bytes = std::max<size_t>(G4K_DECODE_TICKET_BYTES, g4k_attention_decode_scratch(&a, M, MAX_CONTEXT));
    float *scr = (float *)d_scr.get(bytes);
    CK(cudaMemset(scr, 0xff, bytes));
    CK(cudaMemset(scr, 0, G4K_DECODE_TICKET_BYTES));
    return scr;
}

/* One case: M tokens at positions pos0.. of layer kind k, cache dtype dt,
 * ring rows (0: linear); decode (g4k_attention_decode) or prefill
 * (g4k_qkv_post + g4k_attention). Prefill reads the raw q, k, v from three
 * buffers (v = k itself for k_eq_v), or (packed) from one [M][q | k | v]
 * matrix as the fused q/k/v GEMM leaves them (q | k for k_eq_v), with q
 * written to a buffer poisoned with NaN. */
static dbuf d_pack;
static void run_case(const kind &k, int dt, int ring, int pos0, int M, bool decode, bool packed = false) {
    const int hd = k.hd, q_dim = k.n_heads * hd, kv_dim = k.n_kv * hd, group = k.n_heads / k.n_kv;
    const int rows = ring ? ring : MAX_CONTEXT;
    const float eps = 1e-6f;
    g4k_attn a = {};
    a.n_heads = k.n_heads, a.n_kv_heads = k.n_kv, a.head_dim = hd, a.rope_pairs = k.rope_pairs;
    a.rope_theta = k.theta, a.window = k.window, a.ring = ring, a.eps = eps, a.kv_dtype = (g4k_kv_dtype)dt;
    a.k_scale = dt == G4K_KV_FP8 ? KV_SCALE : 1.0f, a.v_scale = dt == G4K_KV_FP8 ? KV_SCALE * 0.75f : 1.0f;

    /* inputs */
    const std::vector<uint8_t> &kc = pristine_cache(k, dt, rows, 0, a.k_scale);
    const std::vector<uint8_t> &vc = pristine_cache(k, dt, rows, 1, a.v_scale);
    std::vector<float> q((size_t)M * q_dim), kr((size_t)M * kv_dim), vr((size_t)M * kv_dim), qn(hd), kn(hd);
    for (int r = 0; r < M * k.n_heads; r++) {
        const float sc = expf(urand(-2, 2));
        for (int d = 0; d < hd; d++) q[(size_t)r * hd + d] = urand(-1, 1) * sc;
    }
    for (int r = 0; r < M * k.n_kv; r++) {
        const float sc = expf(urand(-2, 2)), sv = expf(urand(-2, 2));
        for (int d = 0; d < hd; d++) kr[(size_t)r * hd + d] = urand(-1, 1) * sc, vr[(size_t)r * hd + d] = urand(-1, 1) * sv;
    }
    if (k.k_eq_v) vr = kr;
    for (int d = 0; d < hd; d++) qn[d] = urand(0.05f, 0.2f), kn[d] = urand(0.5f, 1.5f);

    float *dq = (float *)d_q.get(q.size() * 4), *dk = (float *)d_k.get(kr.size() * 4), *dv = (float *)d_v.get(vr.size() * 4);
    float *dqn = (float *)d_qn.get(hd * 4), *dkn = (float *)d_kn.get(hd * 4), *dout = (float *)d_o.get(q.size() * 4);
    a.k_cache = d_kc.get(kc.size()), a.v_cache = d_vc.get(vc.size());
    int *dpos = (int *)d_pos.get(sizeof(int));
    CK(cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dk, kr.data(), kr.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dv, vr.data(), vr.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dqn, qn.data(), hd * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dkn, kn.data(), hd * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(a.k_cache, kc.data(), kc.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(a.v_cache, vc.data(), vc.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dpos, &pos0, sizeof pos0, cudaMemcpyHostToDevice));
    CK(cudaMemset(dout, 0xff, q.size() * 4)); /* NaN */

    /* run */
    float *dscr = nullptr;
    if (decode) {
        dscr = decode_scratch(a, M);
        g4k_attention_decode(&a, dq, dk, dv, dqn, dkn, dout, dscr, dpos, M, MAX_CONTEXT, g_s);
    } else {
        g4k_qkv_in in = {dq, dk, k.k_eq_v ? dk : dv, q_dim, kv_dim, kv_dim};
        if (packed) {
            const int ld = q_dim + (k.k_eq_v ? 1 : 2) * kv_dim;
            std::vector<float> pack((size_t)M * ld);
            for (int m = 0; m < M; m++) {
                memcpy(&pack[(size_t)m * ld], &q[(size_t)m * q_dim], q_dim * 4);
                memcpy(&pack[(size_t)m * ld + q_dim], &kr[(size_t)m * kv_dim], kv_dim * 4);
                if (!k.k_eq_v) memcpy(&pack[(size_t)m * ld + q_dim + kv_dim], &vr[(size_t)m * kv_dim], kv_dim * 4);
            }
            float *dp = (float *)d_pack.get(pack.size() * 4);
            CK(cudaMemcpy(dp, pack.data(), pack.size() * 4, cudaMemcpyHostToDevice));
            CK(cudaMemset(dq, 0xff, q.size() * 4));
            in = {dp, dp + q_dim, dp + (k.k_eq_v ? q_dim : q_dim + kv_dim), ld, ld, ld};
        }
        if (g4k_qkv_post(&a, &in, dq, dqn, dkn, dpos, M, g_s)) fprintf(stderr, "g4k_qkv_post refused the shape\n");
        g4k_attention(&a, dq, dout, dpos, M, MAX_CONTEXT, g_s);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> out(q.size());
    std::vector<uint8_t> kc2(kc.size()), vc2(vc.size());
    CK(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(kc2.data(), a.k_cache, kc.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(vc2.data(), a.v_cache, vc.size(), cudaMemcpyDeviceToHost));
    long tickets_left = 0; /* the call must leave its arrival tickets zero for the next one */
    if (dscr) {
        std::vector<uint32_t> t(G4K_DECODE_TICKET_BYTES / 4);
        CK(cudaMemcpy(t.data(), dscr, G4K_DECODE_TICKET_BYTES, cudaMemcpyDeviceToHost));
        for (uint32_t w : t) tickets_left += w != 0;
    }

    /* host post-processing of the new rows; the cache as the GPU left it must
     * equal the old one with exactly those rows replaced (within a dtype step) */
    std::vector<float> qp = q;
    for (int m = 0; m < M; m++)
        for (int h = 0; h < k.n_heads; h++) {
            float *x = &qp[(size_t)m * q_dim + h * hd];
            host_rmsnorm(x, qn.data(), hd, eps);
            host_rope(x, hd, k.rope_pairs, k.theta, pos0 + m);
        }
    long bad_rows = 0, stray = 0;
    std::vector<char> is_new(rows, 0);
    for (int m = 0; m < M; m++) {
        const int row = ring ? (pos0 + m) % ring : pos0 + m;
        is_new[row] = 1;
        for (int j = 0; j < k.n_kv; j++) {
            std::vector<float> kx(&kr[(size_t)m * kv_dim + j * hd], &kr[(size_t)m * kv_dim + j * hd] + hd);
            std::vector<float> vx(&vr[(size_t)m * kv_dim + j * hd], &vr[(size_t)m * kv_dim + j * hd] + hd);
            host_rmsnorm(kx.data(), kn.data(), hd, eps);
            host_rope(kx.data(), hd, k.rope_pairs, k.theta, pos0 + m);
            host_rmsnorm(vx.data(), nullptr, hd, eps);
            for (int d = 0; d < hd; d++) {
                const size_t i = (size_t)row * kv_dim + j * hd + d;
                const float step = dt == G4K_KV_F32 ? 1e-5f : dt == G4K_KV_BF16 ? 1.0f / 128 : 1.0f / 8;
                const float ek = kv_round(dt, kx[d], a.k_scale), gk = kv_get(kc2, dt, i, a.k_scale);
                const float ev = kv_round(dt, vx[d], a.v_scale), gv = kv_get(vc2, dt, i, a.v_scale);
                /* + 3e-3: the RoPE angle's rounding (device vs host powf) at large positions */
                if (!(fabsf(gk - ek) <= step * fabsf(ek) + 3e-3f)) bad_rows++;
                if (!(fabsf(gv - ev) <= step * fabsf(ev) + 3e-3f)) bad_rows++;
            }
        }
    }
    const size_t row_bytes = (size_t)kv_dim * elem(dt);
    for (int r = 0; r < rows; r++)
        if (!is_new[r] && (memcmp(&kc[r * row_bytes], &kc2[r * row_bytes], row_bytes) ||
                           memcmp(&vc[r * row_bytes], &vc2[r * row_bytes], row_bytes)))
            stray++;

    /* fp64 attention over the cache the GPU left (rows of positions [lo, pos0 + M) as floats) */
    const int lo = k.window && pos0 - k.window + 1 > 0 ? pos0 - k.window + 1 : 0, npos = pos0 + M - lo;
    std::vector<float> Kd((size_t)npos * kv_dim), Vd((size_t)npos * kv_dim);
    parallel_for(npos, [&](int i) {
        const size_t base = (size_t)(ring ? (lo + i) % ring : lo + i) * kv_dim;
        for (int d = 0; d < kv_dim; d++)
            Kd[(size_t)i * kv_dim + d] = kv_get(kc2, dt, base + d, a.k_scale),
            Vd[(size_t)i * kv_dim + d] = kv_get(vc2, dt, base + d, a.v_scale);
    });
    std::vector<double> err(M * k.n_heads, 0.0);
    parallel_for(M * k.n_heads, [&](int idx) {
        const int m = idx / k.n_heads, h = idx % k.n_heads, kvh = h / group, pos = pos0 + m;
        const int first = k.window && pos - k.window + 1 > 0 ? pos - k.window + 1 : 0;
        const float *qq = &qp[(size_t)m * q_dim + h * hd];
        std::vector<double> s(pos - first + 1), o(hd, 0.0);
        double mx = -INFINITY, sum = 0.0;
        for (int p = first; p <= pos; p++) {
            const float *kk = &Kd[(size_t)(p - lo) * kv_dim + kvh * hd];
            double d = 0.0;
            for (int i = 0; i < hd; i++) d += (double)qq[i] * kk[i];
            s[p - first] = d;
            mx = std::max(mx, d);
        }
        for (auto &x : s) sum += x = exp(x - mx);
        for (int p = first; p <= pos; p++) {
            const float *vv = &Vd[(size_t)(p - lo) * kv_dim + kvh * hd];
            const double w = s[p - first] / sum;
            for (int i = 0; i < hd; i++) o[i] += w * vv[i];
        }
        double e = 0.0;
        for (int i = 0; i < hd; i++) {
            const double g = out[(size_t)m * q_dim + h * hd + i];
            e = std::isnan(g) ? INFINITY : std::max(e, fabs(g - o[i]));
        }
        err[idx] = e;
    });
    double max_err = 0.0;
    for (double e : err) max_err = std::max(max_err, e);
    const bool ok = max_err <= TOL && bad_rows == 0 && stray == 0 && tickets_left == 0;
    ok ? n_pass++ : n_fail++;
    printf("%-4s %-16s %-4s ring %-4d pos0 %5d M %3d: max|o-ref| %.2e  kv rows off %ld  stray rows %ld  tickets left %ld  %s\n",
           decode ? "dec" : packed ? "prep" : "pre", k.name, DT_NAME[dt], ring, pos0, M, max_err, bad_rows, stray,
           tickets_left, ok ? "PASS" : "FAIL");
    fflush(stdout);
}

/* ------------------------------------------------------------ timing */

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

/* Median ms of 50 runs of f (5 warm-ups), each between two events. */
template <typename F>
static float time_it(F f) {
    for (int i = 0; i < 5; i++) f();
    std::vector<float> t;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    for (int i = 0; i < 50; i++) {
        CK(cudaEventRecord(e0, g_s));
        f();
        CK(cudaEventRecord(e1, g_s));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t.push_back(ms);
    }
    CK(cudaGetLastError());
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return median(t);
}

/* Geometry + buffers with random contents for timing (values do not matter
 * beyond being finite). */
static g4k_attn timing_setup(const kind &k, int dt, int ring, int M) {
    const int hd = k.hd, rows = ring ? ring : MAX_CONTEXT;
    g4k_attn a = {};
    a.n_heads = k.n_heads, a.n_kv_heads = k.n_kv, a.head_dim = hd, a.rope_pairs = k.rope_pairs;
    a.rope_theta = k.theta, a.window = k.window, a.ring = ring, a.eps = 1e-6f, a.kv_dtype = (g4k_kv_dtype)dt;
    a.k_scale = a.v_scale = dt == G4K_KV_FP8 ? KV_SCALE : 1.0f;
    const size_t cb = (size_t)rows * k.n_kv * hd * elem(dt);
    a.k_cache = d_kc.get(cb), a.v_cache = d_vc.get(cb);
    CK(cudaMemset(a.k_cache, 0x31, cb)); /* small finite values in every dtype */
    CK(cudaMemset(a.v_cache, 0x32, cb));
    std::vector<float> h((size_t)M * k.n_heads * hd);
    for (auto &x : h) x = urand(-1, 1);
    CK(cudaMemcpy(d_q.get(h.size() * 4), h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_k.get(h.size() * 4), h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_v.get(h.size() * 4), h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    d_o.get(h.size() * 4);
    std::vector<float> w(hd, 0.1f);
    CK(cudaMemcpy(d_qn.get(hd * 4), w.data(), hd * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_kn.get(hd * 4), w.data(), hd * 4, cudaMemcpyHostToDevice));
    return a;
}

static void timings() {
    printf("\ntimings (median of 50, ms; 12B shapes, sliding layers with ring = window + 512)\n");
    int *dpos = (int *)d_pos.get(sizeof(int));
    for (int dt = 0; dt < 3; dt++) {
        for (int ctx : {145, 1024, 8192}) {
            float t_new[2], t_vm[2], t_v1[2], t_old[2];
            for (int kk = 0; kk < 2; kk++) {
                const kind &k = kk ? FULL : SLIDING;
                g4k_attn a = timing_setup(k, dt, kk ? 0 : k.window + 512, 1);
                const int pos0 = ctx - 1;
                CK(cudaMemcpy(dpos, &pos0, sizeof pos0, cudaMemcpyHostToDevice));
                float *scr = decode_scratch(a, 1);
                float *q = (float *)d_q.p, *kx = (float *)d_k.p, *v = (float *)d_v.p, *o = (float *)d_o.p;
                const float *qn = (float *)d_qn.p, *kn = (float *)d_kn.p;
                t_new[kk] = time_it([&] { g4k_attention_decode(&a, q, kx, v, qn, kn, o, scr, dpos, 1, MAX_CONTEXT, g_s); });
                setenv("G4_DECODE_ATTN", "v2merge", 1); /* the same kernel, then a merge launch */
                t_vm[kk] = time_it([&] { g4k_attention_decode(&a, q, kx, v, qn, kn, o, scr, dpos, 1, MAX_CONTEXT, g_s); });
                setenv("G4_DECODE_ATTN", "v1", 1); /* the two-launch path, to compare */
                t_v1[kk] = time_it([&] { g4k_attention_decode(&a, q, kx, v, qn, kn, o, scr, dpos, 1, MAX_CONTEXT, g_s); });
                if (g_path) setenv("G4_DECODE_ATTN", g_path, 1);
                else unsetenv("G4_DECODE_ATTN");
                const int q_dim = k.n_heads * k.hd, kv_dim = k.n_kv * k.hd;
                const g4k_qkv_in in = {q, kx, v, q_dim, kv_dim, kv_dim};
                t_old[kk] = time_it([&] {
                    g4k_qkv_post(&a, &in, q, qn, kn, dpos, 1, g_s);
                    g4k_attention(&a, q, o, dpos, 1, MAX_CONTEXT, g_s);
                });
            }
            printf("decode %-4s context %5d: sliding %.4f (v2merge %.4f, v1 %.4f, old %.4f)  full %.4f (v2merge %.4f, "
                   "v1 %.4f, old %.4f)  per step (40 sliding + 8 full) %.3f (v2merge %.3f, v1 %.3f, old %.3f)\n",
                   DT_NAME[dt], ctx, t_new[0], t_vm[0], t_v1[0], t_old[0], t_new[1], t_vm[1], t_v1[1], t_old[1],
                   40 * t_new[0] + 8 * t_new[1], 40 * t_vm[0] + 8 * t_vm[1], 40 * t_v1[0] + 8 * t_v1[1],
                   40 * t_old[0] + 8 * t_old[1]);
        }
    }
    const char *env = getenv("G4_PREFILL_ATTN"), *exact = getenv("G4_EXACT_PREFILL");
    const bool simt_env = (env && !strcmp(env, "simt")) || (exact && atoi(exact));
    char env_copy[16] = ""; /* G4_PREFILL_ATTN as given (tc), restored after each SIMT timing */
    if (env) snprintf(env_copy, sizeof env_copy, "%s", env);
    for (int dt = 0; dt < 3; dt++) {
        for (int n : {145, 1024, 512}) {
            const int pos0 = n == 512 ? 8192 - 512 : 0; /* 512: the last chunk of an 8192-token prompt */
            float t[2], t_simt[2];
            for (int kk = 0; kk < 2; kk++) {
                const kind &k = kk ? FULL : SLIDING;
                g4k_attn a = timing_setup(k, dt, kk ? 0 : k.window + 1024, n);
                CK(cudaMemcpy(dpos, &pos0, sizeof pos0, cudaMemcpyHostToDevice));
                const float *q = (float *)d_q.p;
                float *o = (float *)d_o.p;
                t[kk] = time_it([&] { g4k_attention(&a, q, o, dpos, n, MAX_CONTEXT, g_s); });
                if (!simt_env) { /* the fp32 SIMT kernel, for comparison */
                    setenv("G4_PREFILL_ATTN", "simt", 1);
                    t_simt[kk] = time_it([&] { g4k_attention(&a, q, o, dpos, n, MAX_CONTEXT, g_s); });
                    if (env_copy[0]) setenv("G4_PREFILL_ATTN", env_copy, 1);
                    else unsetenv("G4_PREFILL_ATTN");
                }
            }
            printf("prefill %-4s %4d tokens at %4d: sliding %.4f  full %.4f  per forward (40 + 8 layers) %.3f",
                   DT_NAME[dt], n, pos0, t[0], t[1], 40 * t[0] + 8 * t[1]);
            if (!simt_env)
                printf("  (simt: sliding %.4f  full %.4f  per forward %.3f)", t_simt[0], t_simt[1],
                       40 * t_simt[0] + 8 * t_simt[1]);
            printf("\n");
        }
    }
}

/* The decode launcher captured in a CUDA graph (before any eager call of that
 * kernel: its first call raises the shared-memory limit) and replayed at two
 * positions (pos0 is read on the device) must give what an eager call gives;
 * then the median time of a replay. */
static void graph_check(const kind &k, int dt, int ring, int M, int p1, int p2) {
    g4k_attn a = timing_setup(k, dt, ring, M);
    int *dpos = (int *)d_pos.get(sizeof(int));
    float *scr = decode_scratch(a, M);
    float *q = (float *)d_q.p, *kx = (float *)d_k.p, *v = (float *)d_v.p, *o = (float *)d_o.p;
    const float *qn = (float *)d_qn.p, *kn = (float *)d_kn.p;
    const size_t n = (size_t)M * k.n_heads * k.hd;
    std::vector<float> ref(n), out(n);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(g_s, cudaStreamCaptureModeThreadLocal));
    g4k_attention_decode(&a, q, kx, v, qn, kn, o, scr, dpos, M, MAX_CONTEXT, g_s);
    CK(cudaStreamEndCapture(g_s, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaMemcpy(dpos, &p1, sizeof p1, cudaMemcpyHostToDevice));
    CK(cudaGraphLaunch(exec, g_s));
    CK(cudaStreamSynchronize(g_s));
    CK(cudaMemset(o, 0xff, n * 4));
    CK(cudaMemcpy(dpos, &p2, sizeof p2, cudaMemcpyHostToDevice));
    CK(cudaGraphLaunch(exec, g_s));
    CK(cudaStreamSynchronize(g_s));
    CK(cudaMemcpy(out.data(), o, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemset(o, 0xff, n * 4));
    g4k_attention_decode(&a, q, kx, v, qn, kn, o, scr, dpos, M, MAX_CONTEXT, g_s);
    CK(cudaStreamSynchronize(g_s));
    CK(cudaGetLastError());
    CK(cudaMemcpy(ref.data(), o, n * 4, cudaMemcpyDeviceToHost));
    bool ok = !memcmp(ref.data(), out.data(), n * 4);
    for (size_t i = 0; i < n; i++) ok = ok && std::isfinite(out[i]);
    ok ? n_pass++ : n_fail++;
    const float t = time_it([&] { CK(cudaGraphLaunch(exec, g_s)); });
    printf("graph: decode (%s %s ring %d, M %d) captured first, replayed at %d then %d: %s the eager output; "
           "one replay %.4f ms  %s\n", k.name, DT_NAME[dt], ring, M, p1, p2, ok ? "equals" : "DIFFERS from", t,
           ok ? "PASS" : "FAIL");
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
}

static void release_all() {
    for (dbuf *b : {&d_q, &d_k, &d_v, &d_o, &d_kc, &d_vc, &d_qn, &d_kn, &d_scr, &d_pos, &d_pack}) b->release();
    CK(cudaStreamDestroy(g_s));
}

int main(int argc, char **argv) {
    /* --prefill-tc: only the tensor-core prefill cases of --quick (BF16 and FP8 caches), for
     * compute-sanitizer --tool racecheck, which is too slow for the whole run */
    const bool tc_only = argc > 1 && !strcmp(argv[1], "--prefill-tc");
    /* --decode-fp8: only the decode cases of --quick with the FP8 cache (not its graph replays), for the same reason */
    const bool decode_fp8 = argc > 1 && !strcmp(argv[1], "--decode-fp8");
    const bool quick = tc_only || decode_fp8 || (argc > 1 && !strcmp(argv[1], "--quick"));
    const bool timings_only = argc > 1 && !strcmp(argv[1], "--timings"); /* no checks: the timings alone */
    g_path = getenv("G4_DECODE_ATTN");
    printf("decode path: %s\n", !g_path ? "v2 (default)" : g_path);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaStreamCreate(&g_s));
    if (timings_only) {
        timings();
        release_all();
        return 0;
    }
    /* several splits merged by the last block's ticket, which must be reset for the next replay
     * (the replays and the eager call share the scratch: each must find the tickets at zero) */
    if (!tc_only && !decode_fp8) {
        graph_check(FULL, G4K_KV_BF16, 0, 2, 1500, 3000);
        graph_check(SLIDING, G4K_KV_FP8, SLIDING.window + 512, 1, 1024, 5000);
    }
    printf("attention_check on %s (%d SMs); tolerance max|o - ref| <= %.0e\n", prop.name, prop.multiProcessorCount, TOL);
    const char *path = getenv("G4_PREFILL_ATTN"), *exact = getenv("G4_EXACT_PREFILL");
    printf("prefill attention (M > 8): %s\n", (path && !strcmp(path, "simt")) || (exact && atoi(exact))
                                                 ? "fp32 SIMT tiled kernel (G4_PREFILL_ATTN=simt or G4_EXACT_PREFILL=1)"
                                                 : path && !strcmp(path, "tc")
                                                     ? "tensor cores (mma.sync FP16) for head_dim 128/256/512, every cache dtype"
                                                     : "tensor cores (mma.sync FP16) for head_dim 128/256/512 with BF16/FP8 caches");
    const int contexts[] = {1, 2, 145, 1023, 1024, 1025, 1500, 4096, 8192};
    const int Ms[] = {1, 2, 7};
    for (int dt = decode_fp8 ? G4K_KV_FP8 : tc_only ? 1 : 0; dt < 3; dt++) {
        g_caches.clear();
        /* decode: the M tokens end at position ctx - 1 (start at 0 when ctx < M) */
        for (int ctx : contexts)
            for (int M : Ms) {
                const int pos0 = ctx >= M ? ctx - M : 0;
                if (tc_only || (quick && ctx != 1025 && ctx != 145)) continue;
                run_case(SLIDING, dt, 0, pos0, M, true);
                run_case(SLIDING, dt, SLIDING.window + 512, pos0, M, true);
                run_case(FULL, dt, 0, pos0, M, true);
                if (ctx <= 1500) run_case(MID, dt, ctx % 2 ? MID.window + 8 : 0, pos0, M, true);
                if (ctx <= 1500) run_case(NARROW, dt, NARROW.window + 8, pos0, M, true); /* fewer keys than a split's least */
            }
        if (decode_fp8) continue;
        for (int n : {17, 64, 145, 512})
            for (int pos0 : {0, 1000}) {
                if (quick && n == 512) continue;
                const bool packed = pos0 > 0; /* q/k/v in one matrix, as the fused GEMM leaves them */
                run_case(SLIDING, dt, 0, pos0, n, false, packed);
                run_case(SLIDING, dt, SLIDING.window + 512, pos0, n, false, packed);
                run_case(FULL, dt, 0, pos0, n, false, packed);
                run_case(MID, dt, MID.window + 512, pos0, n, false, packed);
            }
        for (int n : {145, 512}) /* a chunk that wraps around the ring (3000 % 1536 = 1464) */
            run_case(SLIDING, dt, SLIDING.window + 512, 3000, n, false);
        /* the tensor-core prefill's edges: the smallest prefill (M 9), a tile count that is not a
         * multiple of anything, and 1024-token chunks (enough tiles for whole-head_dim output
         * slices at head_dim 256; at 3000 the chunk wraps around the ring: 3000 % 2048 = 952) */
        for (int n : {9, 100}) {
            run_case(SLIDING, dt, SLIDING.window + 512, 1020, n, false);
            run_case(FULL, dt, 0, 1020, n, false);
            run_case(MID, dt, MID.window + 512, 60, n, false);
            for (int pos0 : {0, 60}) run_case(NARROW, dt, NARROW.window + 512, pos0, n, false);
        }
        /* the whole-slice layouts (DCH = 256) at the smallest M that takes them: enough 64-row
         * tiles to fill the SMs (full: M >= 261, two 256-dim slices; sliding: M >= 513) */
        run_case(FULL, dt, 0, 1000, 264, false, true);
        run_case(SLIDING, dt, SLIDING.window + 1024, 3000, 520, false); /* the ring holds window + M - 1 rows */
        if (!quick)
            for (int pos0 : {0, 3000}) {
                run_case(SLIDING, dt, SLIDING.window + 1024, pos0, 1024, false);
                run_case(MID, dt, 0, pos0, 1024, false);
            }
        if (tc_only) continue;
        /* small test-model shapes: fallback paths */
        for (int ctx : {1, 2, 9, 20, 100})
            for (int M : Ms) {
                const int pos0 = ctx >= M ? ctx - M : 0;
                run_case(SMALL_S, dt, 0, pos0, M, true);
                run_case(SMALL_S, dt, SMALL_S.window + 64, pos0, M, true);
                run_case(SMALL_F, dt, 0, pos0, M, true);
            }
        for (int n : {17, 64})
            for (int pos0 : {0, 30}) {
                run_case(SMALL_S, dt, SMALL_S.window + 64, pos0, n, false);
                run_case(SMALL_F, dt, 0, pos0, n, false);
            }
    }
    if (!quick) timings(); /* --quick: fewer cases, no timings (for compute-sanitizer) */
    release_all();
    printf("attention_check: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
