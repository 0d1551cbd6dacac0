/* Decode attention, split-K (flash-decoding), with the q/k/v post-processing
 * fused in: for M <= 8 new tokens, q/k norm + RoPE, the weightless v norm, the
 * KV-cache write of the new rows and the attention over the cache, in two
 * launches. CPU reference: qkv() and attention() in src/cpu/forward.c.
 *
 * Grid of the first kernel: (split, kv head, query chunk). The queries of a KV
 * head are its group's q heads for each of the M tokens (group * M of them),
 * taken NQ at a time (a chunk), so every K/V row a block loads serves NQ
 * queries. The keys the M tokens see, [first, pos0 + M), are cut into `splits`
 * equal runs at run time (at least DEC_MIN_KEYS each; runs past the end exit at
 * once), so the grid depends on max_context, never on the position.
 *
 * Each block first post-processes its NQ q rows and the M new K and V rows of
 * its KV head into shared memory, the new K/V rounded through the cache dtype
 * (what a read of the cache would give). Keys at positions >= pos0 are taken
 * from there, never from the cache, so no block reads a row while it is
 * written; the block of split 0, chunk 0 writes the new rows to the cache.
 * Warps take every 8th key and keep an online softmax per query in registers
 * (lane owns dims c*128 + lane*4 + [0,4)); the warps are merged through shared
 * memory, and each block leaves (max, sum, unnormalized output) per query in
 * scratch. The second kernel, one block per (q head, token), merges the splits.
 * fp32 throughout.
 *
 * That is v1, kept behind G4_DECODE_ATTN=v1. The default (decode2_kernel below,
 * merging its own splits) has a shorter serial chain; see there and decode_path. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/kv.cuh"
#include "cuda/trace.cuh"

#define DEC_WARPS 8
#define DEC_THREADS (DEC_WARPS * 32)
#define DEC_MIN_KEYS 64
#define MERGE_THREADS 128
/* Splits decode_merge can weigh: its weights sit in a fixed shared array. A
 * dynamic [splits] array drew 512 "invalid __shared__ read of size 12 bytes"
 * from compute-sanitizer at the array's start with splits = 1 (perf log,
 * 2026-11-28): reads wider than the array. make_plan keeps splits <= this
 * (splits <= the SM count anyway). */
#define MERGE_MAX_SPLITS 256

/* The key range of the M tokens and its cut into splits: [first, first + n),
 * kps keys per split; splits past ceil(n / kps) have none. */
struct dec_range {
    int first, n, kps, active;
};

__device__ __forceinline__ dec_range decode_range(const g4k_attn &a, int pos0, int M, int splits,
                                                  int min_keys = DEC_MIN_KEYS) {
    dec_range r;
    r.first = a.window && pos0 - a.window + 1 > 0 ? pos0 - a.window + 1 : 0;
    r.n = pos0 + M - r.first;
    int kps = (r.n + splits - 1) / splits;
    kps = kps < min_keys ? min_keys : (kps + 31) / 32 * 32;
    r.kps = kps;
    r.active = (r.n + kps - 1) / kps;
    return r;
}

/* Rows of partial results: ((chunk * n_kv_heads + kvh) * splits + split) * NQ + qi;
 * outputs [rows][head_dim], then (max, sum) [rows][2]. */
__device__ __forceinline__ size_t part_row(const g4k_attn &a, int chunk, int kvh, int split, int splits, int nq, int qi) {
    return (((size_t)chunk * a.n_kv_heads + kvh) * splits + split) * nq + qi;
}

/* One key at position p (kf, vf: this lane's dims) for every query of the chunk:
 * the online-softmax step of each query that sees it. */
template <int NQ, int DPL>
__device__ __forceinline__ void online_update(const float (&qr)[NQ][DPL], float (&acc)[NQ][DPL], float (&rm)[NQ],
                                              float (&rl)[NQ], const int (&qpos)[NQ], int window, const float *kf,
                                              const float *vf, int p) {
    float s[NQ];
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) {
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < DPL; e++) d += qr[qi][e] * kf[e];
        s[qi] = d;
    }
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) s[qi] = g4k_warp_sum(s[qi]);
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) {
        const bool visible = p <= qpos[qi] && (!window || p > qpos[qi] - window);
        if (!visible) continue;
        const float nm = fmaxf(rm[qi], s[qi]);
        const float sc = expf(rm[qi] - nm), pp = expf(s[qi] - nm);
#pragma unroll
        for (int e = 0; e < DPL; e++) acc[qi][e] = acc[qi][e] * sc + pp * vf[e];
        rl[qi] = rl[qi] * sc + pp;
        rm[qi] = nm;
    }
}

template <int DT, int CH, int NQ>
__global__ void __launch_bounds__(DEC_THREADS) decode_kernel(g4k_attn a, const float *q, const float *k, const float *v,
                                                             const float *q_norm, const float *k_norm, float *part,
                                                             const int *pos0p, int M, int splits, int chunks) {
    constexpr int HD = CH * 128, DPL = CH * 4;
    constexpr int ELEM = DT == G4K_KV_F32 ? 4 : DT == G4K_KV_BF16 ? 2 : 1, B4 = 4 * ELEM;
    constexpr int KIF0 = 64 / (CH * B4), KIF = KIF0 < 1 ? 1 : KIF0 > 4 ? 4 : KIF0; /* keys in flight per warp */
    extern __shared__ float sm[];
    __shared__ float gm_s[NQ], gl_s[NQ];
    g4k_wait_inputs();
    g4k_allow_next();
    const int split = blockIdx.x, kvh = blockIdx.y, chunk = blockIdx.z;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int group = a.n_heads / a.n_kv_heads, Q = group * M;
    const int q_dim = a.n_heads * HD, kv_dim = a.n_kv_heads * HD;
    const int pos0 = *pos0p;
    const dec_range rg = decode_range(a, pos0, M, splits);
    if (split >= rg.active) return; /* split 0 is always active: the writer never leaves here */
    const int kb = rg.first + split * rg.kps, ke = min(kb + rg.kps, pos0 + M);
    const bool writer = split == 0 && chunk == 0;

    /* ---- q rows and the new K/V rows, post-processed, into shared memory */
    float *qs = sm, *kn = sm + NQ * HD, *vn = kn + M * HD;
    for (int r = warp; r < NQ + 2 * M; r += DEC_WARPS) {
        const float *src, *w = nullptr;
        float *dst;
        void *cache = nullptr;
        float scale = 1.0f;
        bool rope = false;
        int pos;
        if (r < NQ) {
            const int gq = chunk * NQ + r;
            dst = qs + r * HD;
            if (gq >= Q) { /* padding query: never visible to any key */
                for (int i = lane; i < HD; i += 32) dst[i] = 0.0f;
                continue;
            }
            const int m = gq / group;
            src = q + (size_t)m * q_dim + (kvh * group + gq % group) * HD;
            w = q_norm, rope = true, pos = pos0 + m;
        } else if (r < NQ + M) {
            const int m = r - NQ;
            src = k + (size_t)m * kv_dim + kvh * HD, dst = kn + m * HD;
            w = k_norm, rope = true, pos = pos0 + m, cache = a.k_cache, scale = a.k_scale;
        } else {
            const int m = r - NQ - M;
            src = v + (size_t)m * kv_dim + kvh * HD, dst = vn + m * HD;
            pos = pos0 + m, cache = a.v_cache, scale = a.v_scale;
        }
        float x[DPL], ss = 0.0f; /* lane holds dims lane + 32 i */
#pragma unroll
        for (int i = 0; i < DPL; i++) x[i] = src[lane + 32 * i], ss += x[i] * x[i];
        const float inv = warp_rms_inv(ss, HD, a.eps);
#pragma unroll
        for (int i = 0; i < DPL; i++) x[i] = x[i] * inv * (w ? w[lane + 32 * i] : 1.0f);
        if (rope) { /* pairs (d, d + HD/2): both in this lane */
#pragma unroll
            for (int i = 0; i < DPL / 2; i++) {
                const int d = lane + 32 * i;
                if (d < a.rope_pairs) {
                    float sn, cs;
                    rope_sincos(d, HD, a.rope_theta, pos, &sn, &cs);
                    const float xa = x[i], xb = x[i + DPL / 2];
                    x[i] = xa * cs - xb * sn;
                    x[i + DPL / 2] = xb * cs + xa * sn;
                }
            }
        }
        if (cache) {
            const size_t off = (size_t)kv_row(a, pos) * kv_dim + kvh * HD;
#pragma unroll
            for (int i = 0; i < DPL; i++) x[i] = kv_store(cache, a.kv_dtype, off + lane + 32 * i, x[i], scale, writer);
        }
#pragma unroll
        for (int i = 0; i < DPL; i++) dst[lane + 32 * i] = x[i];
    }
    __syncthreads();

    /* ---- this warp's queries in registers: dims c*128 + lane*4 + e */
    float qr[NQ][DPL], acc[NQ][DPL], rm[NQ], rl[NQ];
    int qpos[NQ];
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) {
        const int gq = chunk * NQ + qi;
        qpos[qi] = gq < Q ? pos0 + gq / group : -1;
        rm[qi] = -INFINITY, rl[qi] = 0.0f;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const float4 t = *reinterpret_cast<const float4 *>(qs + qi * HD + c * 128 + lane * 4);
            qr[qi][4 * c] = t.x, qr[qi][4 * c + 1] = t.y, qr[qi][4 * c + 2] = t.z, qr[qi][4 * c + 3] = t.w;
        }
#pragma unroll
        for (int e = 0; e < DPL; e++) acc[qi][e] = 0.0f;
    }

    /* ---- keys already in the cache: [kb, min(ke, pos0)) */
    const int kc_end = min(ke, pos0);
    const size_t row_bytes = (size_t)kv_dim * ELEM;
    const char *kbase = static_cast<const char *>(a.k_cache) + (size_t)(kvh * HD + lane * 4) * ELEM;
    const char *vbase = static_cast<const char *>(a.v_cache) + (size_t)(kvh * HD + lane * 4) * ELEM;
    for (int j0 = kb + warp; j0 < kc_end; j0 += DEC_WARPS * KIF) {
        raw_slice<B4> kr[KIF][CH], vr[KIF][CH];
#pragma unroll
        for (int u = 0; u < KIF; u++) { /* issue every load of the group first */
            const int p = j0 + u * DEC_WARPS;
            if (p < kc_end) {
                const size_t row = (size_t)kv_row(a, p) * row_bytes;
#pragma unroll
                for (int c = 0; c < CH; c++) {
                    kr[u][c] = load_slice<B4>(kbase + row + c * 128 * ELEM);
                    vr[u][c] = load_slice<B4>(vbase + row + c * 128 * ELEM);
                }
            }
        }
#pragma unroll
        for (int u = 0; u < KIF; u++) {
            const int p = j0 + u * DEC_WARPS;
            if (p >= kc_end) break;
            float kf[DPL], vf[DPL];
#pragma unroll
            for (int c = 0; c < CH; c++) {
                decode_slice<DT, 4, B4>(kr[u][c], a.k_scale, kf + 4 * c);
                decode_slice<DT, 4, B4>(vr[u][c], a.v_scale, vf + 4 * c);
            }
            online_update<NQ, DPL>(qr, acc, rm, rl, qpos, a.window, kf, vf, p);
        }
    }

    /* ---- the new keys: [max(kb, pos0), ke) from shared memory */
    for (int p = max(kb, pos0) + warp; p < ke; p += DEC_WARPS) {
        float kf[DPL], vf[DPL];
        const float *kr = kn + (p - pos0) * HD + lane * 4, *vr = vn + (p - pos0) * HD + lane * 4;
#pragma unroll
        for (int c = 0; c < CH; c++) {
            const float4 tk = *reinterpret_cast<const float4 *>(kr + c * 128);
            const float4 tv = *reinterpret_cast<const float4 *>(vr + c * 128);
            kf[4 * c] = tk.x, kf[4 * c + 1] = tk.y, kf[4 * c + 2] = tk.z, kf[4 * c + 3] = tk.w;
            vf[4 * c] = tv.x, vf[4 * c + 1] = tv.y, vf[4 * c + 2] = tv.z, vf[4 * c + 3] = tv.w;
        }
        online_update<NQ, DPL>(qr, acc, rm, rl, qpos, a.window, kf, vf, p);
    }

    /* ---- merge the warps (shared memory reused: every warp is past the rows above) */
    __syncthreads();
    float *wacc = sm, *wm = sm + DEC_WARPS * NQ * HD, *wl = wm + DEC_WARPS * NQ;
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) {
        if (lane == 0) wm[warp * NQ + qi] = rm[qi], wl[warp * NQ + qi] = rl[qi];
#pragma unroll
        for (int c = 0; c < CH; c++)
            *reinterpret_cast<float4 *>(wacc + (warp * NQ + qi) * HD + c * 128 + lane * 4) =
                make_float4(acc[qi][4 * c], acc[qi][4 * c + 1], acc[qi][4 * c + 2], acc[qi][4 * c + 3]);
    }
    __syncthreads();
    if (threadIdx.x < NQ) {
        const int qi = threadIdx.x;
        float gm = -INFINITY, gl = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) gm = fmaxf(gm, wm[w * NQ + qi]);
        if (gm > -INFINITY)
            for (int w = 0; w < DEC_WARPS; w++) gl += wl[w * NQ + qi] * expf(wm[w * NQ + qi] - gm);
        gm_s[qi] = gm, gl_s[qi] = gl;
        const size_t rows = part_row(a, chunks, 0, 0, splits, NQ, 0); /* all rows */
        float *ml = part + rows * HD + 2 * part_row(a, chunk, kvh, split, splits, NQ, qi);
        ml[0] = gm, ml[1] = gl;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < NQ * HD; i += DEC_THREADS) {
        const int qi = i / HD, d = i % HD;
        const float gm = gm_s[qi];
        float o = 0.0f;
        if (gm > -INFINITY)
            for (int w = 0; w < DEC_WARPS; w++) {
                const float mw = wm[w * NQ + qi];
                if (mw > -INFINITY) o += wacc[(w * NQ + qi) * HD + d] * expf(mw - gm);
            }
        part[part_row(a, chunk, kvh, split, splits, NQ, qi) * HD + d] = o;
    }
}

/* One block per (q head, token): o = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M). */
__global__ void __launch_bounds__(MERGE_THREADS) decode_merge(g4k_attn a, const float *part, float *o,
                                                             const int *pos0p, int M, int splits, int nq, int chunks,
                                                             int min_keys) {
    __shared__ float wgt[MERGE_MAX_SPLITS];
    __shared__ float red[32];
    G4K_TRACE(G4K_TR_MERGE, a.k_cache);
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    const int h = blockIdx.x, m = blockIdx.y, hd = a.head_dim;
    const int group = a.n_heads / a.n_kv_heads, kvh = h / group, gq = m * group + h % group;
    const int chunk = gq / nq, qi = gq % nq;
    const dec_range rg = decode_range(a, *pos0p, M, splits, min_keys);
    const float *ml = part + part_row(a, chunks, 0, 0, splits, nq, 0) * hd;
    float gm = -INFINITY;
    for (int s = 0; s < rg.active; s++) gm = fmaxf(gm, ml[2 * part_row(a, chunk, kvh, s, splits, nq, qi)]);
    float l = 0.0f;
    for (int s = threadIdx.x; s < rg.active; s += blockDim.x) {
        const float *p = ml + 2 * part_row(a, chunk, kvh, s, splits, nq, qi);
        const float w = expf(p[0] - gm); /* 0 for a split this query sees no key of */
        wgt[s] = w;
        l += p[1] * w;
    }
    const float inv = 1.0f / g4k_block_sum(l, red); /* its syncs also publish wgt[] */
    float *orow = o + (size_t)m * a.n_heads * hd + h * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s < rg.active; s++) acc += part[part_row(a, chunk, kvh, s, splits, nq, qi) * hd + d] * wgt[s];
        orow[d] = acc * inv;
    }
}

/* ------------------------------------------------------------ v2: one launch
 *
 * The same work as decode_kernel + decode_merge in one launch, with a shorter
 * serial chain per block:
 *  - before griddepcontrol.wait, while the q/k/v GEMV finishes, the block reads
 *    what no kernel of the step writes: the norm weights, pos0, each warp's
 *    first group of cached keys (into registers) and the rest of its cached
 *    rows (into L2); then it lets the next kernel launch, and makes the RoPE
 *    table (sin, cos of the M positions' angles, rope_sincos's expression, so
 *    bitwise those of g4k_qkv_post);
 *  - a lane owns DPL contiguous dims (one 4/8/16-byte load per row, or a few);
 *  - a warp takes KIF keys at a time: their scores together (the shuffles of
 *    every key and query interleaved), one softmax rescale per group;
 *  - FP8 codes are widened with integer ops (g4k_fp8x4_to_f32_biased: exact,
 *    2^-120 times the value); the K scale is folded into q and the V scale into
 *    the softmax weights, with 2^64 each, and 2^56 goes on the summed scores and
 *    the block's output, so no per-element scaling;
 *  - the new rows sit in shared memory as cache codes, so the key loop treats
 *    them as any other key;
 *  - the last block of each (chunk, kv head) to finish merges the splits (an
 *    arrival ticket in the scratch); with a single active split the block
 *    writes o itself.
 * Ticket: one 32-bit arrival count per (chunk, kv head) in the first
 * G4K_DECODE_TICKET_BYTES of the scratch, zero before the first call (the
 * caller clears them once); the last block to arrive sets its word back to 0.
 * A block arrives with one acq_rel atomic add after a barrier: the release
 * orders the block's partial results (the barrier makes them the adding
 * thread's to release), the acquire lets the last block read everyone's. An
 * earlier version tagged each word with the call (so the scratch needed no
 * initialization) and paid for it with a load and a compare-and-swap, two L2
 * round trips on the step's critical path. */

#define DEC2_MIN_KEYS 32
#define DEC2_MAX_M 8 /* new tokens a launch takes (decode_fast) */
/* Keys a warp takes at a time, at most. Its loop is bound by instruction issue, and every slot
 * of a group costs it whether a key fills it or not. At 145 tokens a warp has 4 keys; the cap of
 * 4 (sliding layers had taken 8) took 0.05-0.07 ms off gemv_bench's chain of a step on the H200
 * (perf log, session 12). */
#define DEC2_KIF 4
#define DEC2_PREFETCH_BYTES 262144 /* per block; the blocks of a KV head share most (L2: 50 MB) */

/* The ticket words in front of the partial results: the same size for every geometry, so layers
 * of different kinds can share one scratch without one's partial results covering another's
 * tickets. v1 and v2merge leave the words alone. */
#define TICKET_WORDS (G4K_DECODE_TICKET_BYTES / 4)

/* BYTES from shared (or any generic) memory, as load_slice does from global. */
template <int BYTES>
__device__ __forceinline__ raw_slice<BYTES> load_slice_generic(const void *p) {
    raw_slice<BYTES> r;
    if (BYTES % 16 == 0) {
#pragma unroll
        for (int i = 0; i < BYTES / 16; i++) {
            const uint4 v = static_cast<const uint4 *>(p)[i];
            r.w[4 * i] = v.x, r.w[4 * i + 1] = v.y, r.w[4 * i + 2] = v.z, r.w[4 * i + 3] = v.w;
        }
    } else if (BYTES % 8 == 0) {
#pragma unroll
        for (int i = 0; i < BYTES / 8; i++) {
            const uint2 v = static_cast<const uint2 *>(p)[i];
            r.w[2 * i] = v.x, r.w[2 * i + 1] = v.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < BYTES / 4; i++) r.w[i] = static_cast<const uint32_t *>(p)[i];
    }
    return r;
}

/* DPL raw elements -> floats; FP8 as 2^-120 times the value (the caller folds
 * scale * 2^120 in elsewhere). */
template <int DT, int DPL, int BYTES>
__device__ __forceinline__ void widen_slice(const raw_slice<BYTES> &r, float *out) {
    if (DT == G4K_KV_FP8) {
#pragma unroll
        for (int i = 0; i < DPL / 4; i++) g4k_fp8x4_to_f32_biased(r.w[i], out + 4 * i);
    } else {
        decode_slice<DT, DPL, BYTES>(r, 1.0f, out); /* BF16 and F32 carry no scale */
    }
}

/* x rounded through the cache dtype: its code at byte offset i of `codes`
 * (and of the cache when write), as kv_store does. */
template <int DT>
__device__ __forceinline__ void kv_encode(void *cache, unsigned char *codes, size_t ci, int i, float x, float scale,
                                          bool write) {
    if (DT == G4K_KV_F32) {
        if (write) static_cast<float *>(cache)[ci] = x;
        reinterpret_cast<float *>(codes)[i] = x;
    } else if (DT == G4K_KV_BF16) {
        const uint16_t b = g4k_f32_to_bf16(x);
        if (write) static_cast<uint16_t *>(cache)[ci] = b;
        reinterpret_cast<uint16_t *>(codes)[i] = b;
    } else {
        const uint8_t c = g4k_f32_to_fp8(x / scale);
        if (write) static_cast<uint8_t *>(cache)[ci] = c;
        codes[i] = c;
    }
}

template <int DT, int CH, int NQ>
__global__ void __launch_bounds__(DEC_THREADS) decode2_kernel(g4k_attn a, const float *q, const float *k,
                                                              const float *v, const float *q_norm,
                                                              const float *k_norm, float *o, float *scratch,
                                                              const int *pos0p, int M, int splits, int chunks,
                                                              int fused) {
    constexpr int HD = CH * 128, DPL = CH * 4;
    constexpr int ELEM = DT == G4K_KV_F32 ? 4 : DT == G4K_KV_BF16 ? 2 : 1, LB = DPL * ELEM;
    /* keys in flight per warp: up to 64 bytes of K per lane, 32 scores in registers, DEC2_KIF */
    constexpr int KIF0 = 64 / LB < 32 / NQ ? 64 / LB : 32 / NQ, KIF = KIF0 < 1 ? 1 : KIF0 > DEC2_KIF ? DEC2_KIF : KIF0;
    extern __shared__ __align__(16) float sm[];
    __shared__ float gl_s[NQ];
    __shared__ int last_s;
    __shared__ float2 rope_tab[DEC2_MAX_M][HD / 2]; /* (sin, cos) of each new token's angles */
    G4K_TRACE(G4K_TR_ATTN, a.k_cache);
    const int split = blockIdx.x, kvh = blockIdx.y, chunk = blockIdx.z;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int group = a.n_heads / a.n_kv_heads, Q = group * M;
    const int q_dim = a.n_heads * HD, kv_dim = a.n_kv_heads * HD;

    /* ---- before the wait: only what no kernel of this step writes. The position and the cached
     * rows below it are written before the step's first kernel starts (by the host's copy or the
     * previous step's last kernel, and by earlier steps), and the rows from pos0 on come from shared
     * memory, never from the cache, so this block may read them before griddepcontrol.wait. */
    float wq[DPL], wk[DPL]; /* lane holds dims lane + 32 i */
#pragma unroll
    for (int i = 0; i < DPL; i++) wq[i] = q_norm[lane + 32 * i], wk[i] = k_norm[lane + 32 * i];
    /* FP8: of the 2^120 the widened codes lack, 2^64 rides on q (K) and the weights (V), and 2^56
     * is put back on the summed scores and the block's output (all products stay far from fp32's
     * limits whatever the scales; powers of two, so the values are those of the plain products) */
    const float KS = DT == G4K_KV_FP8 ? a.k_scale * 0x1p64f : 1.0f;
    const float VS = DT == G4K_KV_FP8 ? a.v_scale * 0x1p64f : 1.0f;
    const float POST = DT == G4K_KV_FP8 ? 0x1p56f : 1.0f;
    const int pos0 = *pos0p;
    const dec_range rg = decode_range(a, pos0, M, splits, DEC2_MIN_KEYS);
    if (split >= rg.active) return; /* split 0 is always active: the writer never leaves here */
    const int kb = rg.first + split * rg.kps, ke = min(kb + rg.kps, pos0 + M);
    const bool writer = split == 0 && chunk == 0;
    const int kc_end = min(ke, pos0);
    const size_t row_bytes = (size_t)kv_dim * ELEM;

    /* this KV head's slice of cache row 0, and this lane's dims in it */
    const char *khead = static_cast<const char *>(a.k_cache) + (size_t)kvh * HD * ELEM;
    const char *vhead = static_cast<const char *>(a.v_cache) + (size_t)kvh * HD * ELEM;
    const char *kg = khead + lane * LB, *vg = vhead + lane * LB;
    raw_slice<LB> kr[KIF], vr[KIF]; /* the group of keys j0 + u * DEC_WARPS */
    auto load_cached = [&](int j0) { /* the cached keys of the group; zeros elsewhere */
#pragma unroll
        for (int u = 0; u < KIF; u++) {
            const int p = j0 + u * DEC_WARPS;
            if (p < kc_end) {
                const size_t row = (size_t)kv_row(a, p) * row_bytes;
                kr[u] = load_slice<LB>(kg + row);
                vr[u] = load_slice<LB>(vg + row);
            } else {
#pragma unroll
                for (int i = 0; i < LB / 4; i++) kr[u].w[i] = 0u, vr[u].w[i] = 0u;
            }
        }
    };
    load_cached(kb + warp); /* this warp's first group, into registers: the key loop below takes them */
    /* the block's other cached rows into L2 */
    {
        constexpr int LINES = HD * ELEM / 128; /* 128-byte lines of one head's row (>= 1) */
        constexpr int MAXK = DEC2_PREFETCH_BYTES / (2 * HD * ELEM);
        const int rest = kb + DEC_WARPS * KIF, nk = min(kc_end - rest, MAXK); /* past the first groups */
        for (int i = threadIdx.x; i < nk * LINES; i += DEC_THREADS) {
            const size_t off = (size_t)kv_row(a, rest + i / LINES) * row_bytes + (i % LINES) * 128;
            g4k_prefetch_l2(khead + off);
            g4k_prefetch_l2(vhead + off);
        }
    }
    /* Only now may the next kernel (o's GEMV) launch: its blocks start by loading their weights,
     * and loads issued after that flood wait behind it (perf log, session 12). */
    g4k_allow_next();
    /* (sin, cos) of the RoPE angles of the M positions, a thread an angle: one call site of powf
     * and sincosf (unrolled per lane they made the kernel's code KBs longer); the inverse frequency
     * is rope_sincos's expression, so the angles are bitwise those of g4k_qkv_post */
#pragma unroll 1
    for (int i = threadIdx.x; i < M * (HD / 2); i += DEC_THREADS) {
        const int m = i / (HD / 2), d = i % (HD / 2);
        float sn = 0.0f, cs = 1.0f;
        if (d < a.rope_pairs) rope_sincos(d, HD, a.rope_theta, pos0 + m, &sn, &cs);
        rope_tab[m][d] = make_float2(sn, cs);
    }
    __syncthreads();

    g4k_wait_inputs();
    G4K_TRACE_WAITED();

    /* ---- q rows (float, times KS) and the new K/V rows (cache codes) into shared memory */
    float *qs = sm;
    unsigned char *kn = reinterpret_cast<unsigned char *>(sm + NQ * HD), *vn = kn + (size_t)M * HD * ELEM;
    for (int r = warp; r < NQ + 2 * M; r += DEC_WARPS) {
        const float *src;
        int kind, pos; /* 0: q, 1: k, 2: v */
        if (r < NQ) {
            const int gq = chunk * NQ + r;
            if (gq >= Q) { /* padding query: never visible to any key */
                for (int i = lane; i < HD; i += 32) qs[r * HD + i] = 0.0f;
                continue;
            }
            const int m = gq / group;
            src = q + (size_t)m * q_dim + (kvh * group + gq % group) * HD, kind = 0, pos = pos0 + m;
        } else if (r < NQ + M) {
            const int m = r - NQ;
            src = k + (size_t)m * kv_dim + kvh * HD, kind = 1, pos = pos0 + m;
        } else {
            const int m = r - NQ - M;
            src = v + (size_t)m * kv_dim + kvh * HD, kind = 2, pos = pos0 + m;
        }
        float x[DPL], ss = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) x[i] = src[lane + 32 * i], ss += x[i] * x[i];
        const float inv = warp_rms_inv(ss, HD, a.eps);
#pragma unroll
        for (int i = 0; i < DPL; i++) x[i] = x[i] * inv * (kind == 0 ? wq[i] : kind == 1 ? wk[i] : 1.0f);
        if (kind < 2) { /* pairs (d, d + HD/2): both in this lane */
#pragma unroll
            for (int i = 0; i < DPL / 2; i++) {
                if (lane + 32 * i < a.rope_pairs) {
                    const float2 sc = rope_tab[pos - pos0][lane + 32 * i]; /* (sin, cos) */
                    const float sn = sc.x, cs = sc.y;
                    const float xa = x[i], xb = x[i + DPL / 2];
                    x[i] = xa * cs - xb * sn;
                    x[i + DPL / 2] = xb * cs + xa * sn;
                }
            }
        }
        if (kind == 0) {
#pragma unroll
            for (int i = 0; i < DPL; i++) qs[r * HD + lane + 32 * i] = x[i] * KS;
        } else {
            const int m = r - NQ - (kind == 2 ? M : 0);
            void *cache = kind == 1 ? a.k_cache : a.v_cache;
            unsigned char *codes = (kind == 1 ? kn : vn) + (size_t)m * HD * ELEM;
            const float scale = kind == 1 ? a.k_scale : a.v_scale;
            const size_t off = (size_t)kv_row(a, pos) * kv_dim + kvh * HD;
#pragma unroll
            for (int i = 0; i < DPL; i++) kv_encode<DT>(cache, codes, off + lane + 32 * i, lane + 32 * i, x[i], scale, writer);
        }
    }
    __syncthreads();

    /* ---- this warp's queries in registers: dims lane * DPL + e */
    float qr[NQ][DPL], acc[NQ][DPL], rm[NQ], rl[NQ];
    int qpos[NQ];
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) {
        const int gq = chunk * NQ + qi;
        qpos[qi] = gq < Q ? pos0 + gq / group : -1;
        rm[qi] = -INFINITY, rl[qi] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL / 4; c++) {
            const float4 t = *reinterpret_cast<const float4 *>(qs + qi * HD + lane * DPL + 4 * c);
            qr[qi][4 * c] = t.x, qr[qi][4 * c + 1] = t.y, qr[qi][4 * c + 2] = t.z, qr[qi][4 * c + 3] = t.w;
        }
#pragma unroll
        for (int e = 0; e < DPL; e++) acc[qi][e] = 0.0f;
    }

    /* ---- keys [kb, ke): cached ones from global memory, the new ones from shared */
    const unsigned char *ksm = kn + lane * LB, *vsm = vn + lane * LB;
    for (int j0 = kb + warp; j0 < ke; j0 += DEC_WARPS * KIF) {
        if (j0 != kb + warp) load_cached(j0); /* the first group was loaded before the wait */
#pragma unroll
        for (int u = 0; u < KIF; u++) { /* the group's new keys */
            const int p = j0 + u * DEC_WARPS;
            if (p >= kc_end && p < ke) {
                kr[u] = load_slice_generic<LB>(ksm + (size_t)(p - pos0) * HD * ELEM);
                vr[u] = load_slice_generic<LB>(vsm + (size_t)(p - pos0) * HD * ELEM);
            }
        }
        /* scores of every (key, query), then their warp sums side by side */
        float s[KIF][NQ];
#pragma unroll
        for (int u = 0; u < KIF; u++) {
            float kf[DPL];
            widen_slice<DT, DPL, LB>(kr[u], kf);
#pragma unroll
            for (int qi = 0; qi < NQ; qi++) {
                float d = 0.0f;
#pragma unroll
                for (int e = 0; e < DPL; e++) d += qr[qi][e] * kf[e];
                s[u][qi] = d;
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
#pragma unroll
            for (int u = 0; u < KIF; u++)
#pragma unroll
                for (int qi = 0; qi < NQ; qi++) s[u][qi] += __shfl_xor_sync(0xffffffffu, s[u][qi], off);
#pragma unroll
        for (int u = 0; u < KIF; u++)
#pragma unroll
            for (int qi = 0; qi < NQ; qi++) s[u][qi] *= POST;
        /* one online-softmax step per query for the group; s becomes the weights */
#pragma unroll
        for (int qi = 0; qi < NQ; qi++) {
            float mx = rm[qi];
#pragma unroll
            for (int u = 0; u < KIF; u++) {
                const int p = j0 + u * DEC_WARPS;
                const bool visible = p < ke && p <= qpos[qi] && (!a.window || p > qpos[qi] - a.window);
                s[u][qi] = visible ? s[u][qi] : -INFINITY;
                mx = fmaxf(mx, s[u][qi]);
            }
            if (mx == -INFINITY) { /* nothing visible yet: weights 0, state unchanged */
#pragma unroll
                for (int u = 0; u < KIF; u++) s[u][qi] = 0.0f;
                continue;
            }
            const float sc = expf(rm[qi] - mx);
            float psum = 0.0f;
#pragma unroll
            for (int u = 0; u < KIF; u++) {
                const float pw = expf(s[u][qi] - mx);
                psum += pw;
                s[u][qi] = pw * VS;
            }
            rl[qi] = rl[qi] * sc + psum;
            rm[qi] = mx;
#pragma unroll
            for (int e = 0; e < DPL; e++) acc[qi][e] *= sc;
        }
#pragma unroll
        for (int u = 0; u < KIF; u++) {
            float vf[DPL];
            widen_slice<DT, DPL, LB>(vr[u], vf);
#pragma unroll
            for (int qi = 0; qi < NQ; qi++)
#pragma unroll
                for (int e = 0; e < DPL; e++) acc[qi][e] += s[u][qi] * vf[e];
        }
    }

    /* ---- merge the warps (shared memory reused: every warp is past the rows above). A warp's
     * row holds float4 c of lane l in slot c * 32 + l (dims l * DPL + 4c ..), so a store of the 32
     * lanes fills 512 contiguous bytes: with the dims in order, lanes 64 or 32 bytes apart hit the
     * same banks, 16 or 8 ways. */
    __syncthreads();
    float *wacc = sm, *wm = sm + DEC_WARPS * NQ * HD, *wl = wm + DEC_WARPS * NQ;
#pragma unroll
    for (int qi = 0; qi < NQ; qi++) {
        if (lane == 0) wm[warp * NQ + qi] = rm[qi], wl[warp * NQ + qi] = rl[qi];
#pragma unroll
        for (int c = 0; c < DPL / 4; c++)
            *reinterpret_cast<float4 *>(wacc + (warp * NQ + qi) * HD + (c * 32 + lane) * 4) =
                make_float4(acc[qi][4 * c], acc[qi][4 * c + 1], acc[qi][4 * c + 2], acc[qi][4 * c + 3]);
    }
    __syncthreads();
    const bool single = fused && rg.active == 1; /* !fused: decode_merge merges, even one split */
    float *part = scratch + TICKET_WORDS;
    float *mlall = part + part_row(a, chunks, 0, 0, splits, NQ, 0) * HD; /* (max, sum) [rows][2] */
    __shared__ float wf[DEC_WARPS][NQ];                                  /* each warp's factor e^(m_w - m) */
    if (threadIdx.x < NQ) {
        const int qi = threadIdx.x;
        float gm = -INFINITY, gl = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++) gm = fmaxf(gm, wm[w * NQ + qi]);
        for (int w = 0; w < DEC_WARPS; w++) {
            const float mw = wm[w * NQ + qi], f = gm > -INFINITY && mw > -INFINITY ? expf(mw - gm) : 0.0f;
            wf[w][qi] = f;
            gl += wl[w * NQ + qi] * f;
        }
        gl_s[qi] = gl;
        if (!single) {
            float *ml = mlall + 2 * part_row(a, chunk, kvh, split, splits, NQ, qi);
            ml[0] = gm, ml[1] = gl;
        }
    }
    __syncthreads();
    constexpr int V4 = NQ * HD / 4, PER = (V4 + DEC_THREADS - 1) / DEC_THREADS; /* float4s of the block's output */
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * DEC_THREADS;
        if (i >= V4) break;
        const int qi = i * 4 / HD, slot = i % (HD / 4), gq = chunk * NQ + qi;
        const int d = slot % 32 * DPL + slot / 32 * 4; /* the slot's dims */
        float4 r = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            const float4 t = *reinterpret_cast<const float4 *>(wacc + (w * NQ + qi) * HD + slot * 4);
            const float f = wf[w][qi] * POST;
            r.x += t.x * f, r.y += t.y * f, r.z += t.z * f, r.w += t.w * f;
        }
        if (!single) *reinterpret_cast<float4 *>(part + part_row(a, chunk, kvh, split, splits, NQ, qi) * HD + d) = r;
        else if (gq < Q) {
            const float l = gl_s[qi];
            *reinterpret_cast<float4 *>(o + (size_t)(gq / group) * q_dim + (kvh * group + gq % group) * HD + d) =
                make_float4(r.x / l, r.y / l, r.z / l, r.w / l);
        }
    }
    if (single || !fused) return;

    /* ---- arrival ticket: the last block of this (chunk, kv head) merges the splits */
    __syncthreads(); /* every partial result of the block is stored: thread 0 releases them all */
    if (threadIdx.x == 0) {
        unsigned *tw = reinterpret_cast<unsigned *>(scratch) + (size_t)chunk * a.n_kv_heads + kvh;
        unsigned arrived;
        asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;" : "=r"(arrived) : "l"(tw) : "memory");
        const bool last = arrived + 1 == (unsigned)rg.active;
        if (last) *tw = 0u; /* every other block has arrived: ready for the next call */
        last_s = last;
    }
    __syncthreads();
    if (!last_s) return;
    /* every split's (max, sum) and partial output at once, then one weighing: per float4 of the
     * output, chunks of MC splits with an online rescale between chunks (one chunk up to MC
     * splits, so the two loads are the merge's only round trip) */
    constexpr int MC = 8;
    float4 r[PER];
    float run_max[PER], run_sum[PER]; /* per float4: the splits' running max and weighted sum of l */
#pragma unroll
    for (int j = 0; j < PER; j++) r[j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f), run_max[j] = -INFINITY, run_sum[j] = 0.0f;
    for (int sp0 = 0; sp0 < rg.active; sp0 += MC) {
        float4 t[MC][PER];
        float2 ml[MC][PER];
#pragma unroll
        for (int u = 0; u < MC; u++)
#pragma unroll
            for (int j = 0; j < PER; j++) {
                const int i = threadIdx.x + j * DEC_THREADS, sp = sp0 + u;
                ml[u][j] = make_float2(-INFINITY, 0.0f), t[u][j] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (i < V4 && sp < rg.active) {
                    const int qi = i * 4 / HD, d = i * 4 % HD;
                    const size_t row = part_row(a, chunk, kvh, sp, splits, NQ, qi);
                    t[u][j] = __ldcg(reinterpret_cast<const float4 *>(part + row * HD + d));
                    ml[u][j] = __ldcg(reinterpret_cast<const float2 *>(mlall + 2 * row));
                }
            }
#pragma unroll
        for (int j = 0; j < PER; j++) {
            float mx = run_max[j];
#pragma unroll
            for (int u = 0; u < MC; u++) mx = fmaxf(mx, ml[u][j].x);
            if (mx == -INFINITY) continue; /* no split so far holds a key this query sees */
            const float sc = run_max[j] > -INFINITY ? expf(run_max[j] - mx) : 0.0f;
            r[j].x *= sc, r[j].y *= sc, r[j].z *= sc, r[j].w *= sc, run_sum[j] *= sc;
#pragma unroll
            for (int u = 0; u < MC; u++) {
                const float w = ml[u][j].x > -INFINITY ? expf(ml[u][j].x - mx) : 0.0f; /* 0: no key of it seen */
                r[j].x += t[u][j].x * w, r[j].y += t[u][j].y * w, r[j].z += t[u][j].z * w, r[j].w += t[u][j].w * w;
                run_sum[j] += ml[u][j].y * w;
            }
            run_max[j] = mx;
        }
    }
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * DEC_THREADS;
        const int qi = i * 4 / HD, d = i * 4 % HD, gq = chunk * NQ + qi;
        if (i < V4 && gq < Q) {
            const float l = run_sum[j];
            *reinterpret_cast<float4 *>(o + (size_t)(gq / group) * q_dim + (kvh * group + gq % group) * HD + d) =
                make_float4(r[j].x / l, r[j].y / l, r[j].z / l, r[j].w / l);
        }
    }
}

/* ------------------------------------------------------------ launchers */

struct dec_plan {
    int nq, chunks, splits;
    size_t smem; /* dynamic shared memory of decode_kernel / decode2_kernel */
};

static bool decode_fast(const g4k_attn *a, int M) {
    const int groups = a->n_heads * M; /* at most (chunks <= Q) * n_kv_heads tickets */
    return M >= 1 && M <= DEC2_MAX_M && (a->head_dim == 128 || a->head_dim == 256 || a->head_dim == 512) &&
           a->n_heads % a->n_kv_heads == 0 && groups <= TICKET_WORDS;
}

/* The default is decode2_kernel merging its splits itself (the ticket merge, v2): on the H200 it
 * beat decode2_kernel + decode_merge (v2merge) in four of four runs, by 0.3-2.7 % per step at 145
 * and 0.8 % at 1024 tokens (perf log, session 7). On the H100 of session 2, with the slower
 * GEMVs of then, v2merge had won by 5-9 %: re-check there. G4_DECODE_ATTN=v2merge: decode_merge
 * merges; =v1: the two-launch path (decode_kernel + decode_merge). Returns 0 (v1), 1 (v2merge) or
 * 2 (v2). */
static int decode_path() {
    const char *e = getenv("G4_DECODE_ATTN"); /* read per call: tests switch it */
    return e && !strcmp(e, "v1") ? 0 : e && !strcmp(e, "v2merge") ? 1 : 2;
}

static dec_plan make_plan(const g4k_attn *a, int M, int max_context, int min_keys) {
    dec_plan p;
    const int hd = a->head_dim, Q = a->n_heads / a->n_kv_heads * M;
    const int nq_max = 64 / (hd / 32); /* q and the output accumulators: 2 * 64 registers a lane */
    int nq = 1;
    while (nq < Q && nq < nq_max) nq *= 2;
    p.nq = nq;
    p.chunks = (Q + nq - 1) / nq;
    const int span = a->window && a->window + M - 1 < max_context ? a->window + M - 1 : max_context;
    const int per_split = a->n_kv_heads * p.chunks;
    const int by_keys = (span + min_keys - 1) / min_keys, by_sms = (g4k_sm_count() + per_split - 1) / per_split;
    p.splits = by_keys < by_sms ? by_keys : by_sms;
    if (p.splits < 1) p.splits = 1;
    if (p.splits > MERGE_MAX_SPLITS) p.splits = MERGE_MAX_SPLITS;
    const size_t rows = (size_t)(nq + 2 * M) * hd, merge = (size_t)DEC_WARPS * nq * (hd + 2);
    p.smem = sizeof(float) * (rows > merge ? rows : merge);
    return p;
}

/* Bytes of scratch one plan needs: the tickets, then the partial results. */
static size_t plan_scratch(const g4k_attn *a, const dec_plan &p) {
    const size_t groups = (size_t)p.chunks * a->n_kv_heads;
    return G4K_DECODE_TICKET_BYTES + sizeof(float) * groups * p.splits * p.nq * (a->head_dim + 2);
}

struct dec_args {
    const float *q, *k, *v, *q_norm, *k_norm;
    float *o, *scratch;
    const int *pos0;
    int M;
};

template <int DT, int CH, int NQ>
static void launch_decode(const g4k_attn *a, const dec_args &x, const dec_plan &p, cudaStream_t s, bool run,
                          int v2) {
    static bool raised = false; /* the smem limit (64 KB and a little more), once per kernel pair */
    if (!raised) {
        const int most = (int)(sizeof(float) * ((size_t)DEC_WARPS * NQ * (CH * 128 + 2) + (size_t)(NQ + 16) * CH * 128));
        cudaFuncSetAttribute(decode_kernel<DT, CH, NQ>, cudaFuncAttributeMaxDynamicSharedMemorySize, most);
        cudaFuncSetAttribute(decode2_kernel<DT, CH, NQ>, cudaFuncAttributeMaxDynamicSharedMemorySize, most);
        raised = true;
    }
    if (!run) return;
    const dim3 grid(p.splits, a->n_kv_heads, p.chunks);
    if (v2)
        g4k_launch(decode2_kernel<DT, CH, NQ>, grid, DEC_THREADS, p.smem, s, *a, x.q, x.k, x.v, x.q_norm, x.k_norm, x.o,
                   x.scratch, x.pos0, x.M, p.splits, p.chunks, v2 == 2 ? 1 : 0);
    else
        g4k_launch(decode_kernel<DT, CH, NQ>, grid, DEC_THREADS, p.smem, s, *a, x.q, x.k, x.v, x.q_norm, x.k_norm,
                   x.scratch, x.pos0, x.M, p.splits, p.chunks);
}

template <int DT, int CH>
static void launch_nq(const g4k_attn *a, const dec_args &x, const dec_plan &p, cudaStream_t s, bool run, int v2) {
    switch (p.nq) { /* nq <= 64 / (CH * 4) */
    case 1: launch_decode<DT, CH, 1>(a, x, p, s, run, v2); break;
    case 2: launch_decode<DT, CH, 2>(a, x, p, s, run, v2); break;
    case 4: launch_decode<DT, CH, 4>(a, x, p, s, run, v2); break;
    case 8:
        if (CH <= 2) launch_decode<DT, (CH <= 2 ? CH : 2), 8>(a, x, p, s, run, v2);
        break;
    default:
        if (CH == 1) launch_decode<DT, 1, 16>(a, x, p, s, run, v2);
    }
}

template <int DT>
static void launch_ch(const g4k_attn *a, const dec_args &x, const dec_plan &p, cudaStream_t s, bool run, int v2) {
    switch (a->head_dim) {
    case 128: launch_nq<DT, 1>(a, x, p, s, run, v2); break;
    case 256: launch_nq<DT, 2>(a, x, p, s, run, v2); break;
    default: launch_nq<DT, 4>(a, x, p, s, run, v2);
    }
}

/* v2: 0 decode_kernel (v1), 1 decode2_kernel leaving its partials to decode_merge, 2 decode2_kernel merging itself */
static void launch_dt(const g4k_attn *a, const dec_args &x, const dec_plan &p, cudaStream_t s, bool run, int v2) {
    switch (a->kv_dtype) {
    case G4K_KV_F32: launch_ch<G4K_KV_F32>(a, x, p, s, run, v2); break;
    case G4K_KV_BF16: launch_ch<G4K_KV_BF16>(a, x, p, s, run, v2); break;
    default: launch_ch<G4K_KV_FP8>(a, x, p, s, run, v2);
    }
}

extern "C" void g4k_attention_decode(const g4k_attn *a, float *q, float *k, float *v, const float *q_norm,
                                     const float *k_norm, float *o, float *scratch, const int *pos0, int M,
                                     int max_context, g4_stream s) {
    assert(!a->ring || (a->window > 0 && a->ring >= a->window + M - 1)); /* the ring contract (kernels.h) */
    if (!decode_fast(a, M)) {
        const int q_dim = a->n_heads * a->head_dim, kv_dim = a->n_kv_heads * a->head_dim;
        const g4k_qkv_in in = {q, k, v, q_dim, kv_dim, kv_dim};
        g4k_qkv_post(a, &in, q, q_norm, k_norm, pos0, M, s);
        g4k_attention(a, q, o, pos0, M, max_context, s);
        return;
    }
    const int path = decode_path();
    float *part = scratch + TICKET_WORDS; /* v1 takes only the partial results */
    const dec_args x = {q, k, v, q_norm, k_norm, o, path ? scratch : part, pos0, M};
    const int min_keys = path ? DEC2_MIN_KEYS : DEC_MIN_KEYS;
    const dec_plan p = make_plan(a, M, max_context, min_keys);
    launch_dt(a, x, p, s, true, path);
    if (path == 2) return;
    g4k_launch(decode_merge, dim3(a->n_heads, M), MERGE_THREADS, 0, s, *a, part, o, pos0, M, p.splits, p.nq, p.chunks,
               min_keys);
}

/* Enough for every M' <= M and either path; also raises the shared-memory limit of every
 * kernel those calls use, so that a graph capture of the launcher later makes no such call. */
extern "C" size_t g4k_attention_decode_scratch(const g4k_attn *a, int M, int max_context) {
    size_t bytes = 0;
    const dec_args none = {};
    for (int m = 1; m <= M; m++) {
        if (!decode_fast(a, m)) continue;
        const dec_plan p1 = make_plan(a, m, max_context, DEC_MIN_KEYS), p2 = make_plan(a, m, max_context, DEC2_MIN_KEYS);
        launch_dt(a, none, p1, 0, false, 0);
        const size_t b1 = plan_scratch(a, p1), b2 = plan_scratch(a, p2);
        bytes = b1 > bytes ? b1 : bytes;
        bytes = b2 > bytes ? b2 : bytes;
    }
    return bytes;
}
