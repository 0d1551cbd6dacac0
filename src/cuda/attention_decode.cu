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
 * fp32 throughout. */
#include <assert.h>

#include "cuda/kv.cuh"

#define DEC_WARPS 8
#define DEC_THREADS (DEC_WARPS * 32)
#define DEC_MIN_KEYS 64
#define MERGE_THREADS 128

/* The key range of the M tokens and its cut into splits: [first, first + n),
 * kps keys per split; splits past ceil(n / kps) have none. */
struct dec_range {
    int first, n, kps, active;
};

__device__ __forceinline__ dec_range decode_range(const g4k_attn &a, int pos0, int M, int splits) {
    dec_range r;
    r.first = a.window && pos0 - a.window + 1 > 0 ? pos0 - a.window + 1 : 0;
    r.n = pos0 + M - r.first;
    int kps = (r.n + splits - 1) / splits;
    kps = kps < DEC_MIN_KEYS ? DEC_MIN_KEYS : (kps + 31) / 32 * 32;
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
                                                             const int *pos0p, int M, int splits, int nq, int chunks) {
    extern __shared__ float wgt[]; /* [splits] */
    __shared__ float red[32];
    g4k_wait_inputs();
    g4k_allow_next();
    const int h = blockIdx.x, m = blockIdx.y, hd = a.head_dim;
    const int group = a.n_heads / a.n_kv_heads, kvh = h / group, gq = m * group + h % group;
    const int chunk = gq / nq, qi = gq % nq;
    const dec_range rg = decode_range(a, *pos0p, M, splits);
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

/* ------------------------------------------------------------ launchers */

struct dec_plan {
    int nq, chunks, splits;
    size_t smem; /* dynamic shared memory of decode_kernel */
};

static int sm_count() {
    static int n = 0;
    if (!n) {
        int dev = 0;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 132;
    }
    return n;
}

static bool decode_fast(const g4k_attn *a, int M) {
    return M >= 1 && M <= 8 && (a->head_dim == 128 || a->head_dim == 256 || a->head_dim == 512) &&
           a->n_heads % a->n_kv_heads == 0;
}

static dec_plan make_plan(const g4k_attn *a, int M, int max_context) {
    dec_plan p;
    const int hd = a->head_dim, Q = a->n_heads / a->n_kv_heads * M;
    const int nq_max = 64 / (hd / 32); /* q and the output accumulators: 2 * 64 registers a lane */
    int nq = 1;
    while (nq < Q && nq < nq_max) nq *= 2;
    p.nq = nq;
    p.chunks = (Q + nq - 1) / nq;
    const int span = a->window && a->window + M - 1 < max_context ? a->window + M - 1 : max_context;
    const int per_split = a->n_kv_heads * p.chunks;
    const int by_keys = (span + DEC_MIN_KEYS - 1) / DEC_MIN_KEYS, by_sms = (sm_count() + per_split - 1) / per_split;
    p.splits = by_keys < by_sms ? by_keys : by_sms;
    if (p.splits < 1) p.splits = 1;
    const size_t rows = (size_t)(nq + 2 * M) * hd, merge = (size_t)DEC_WARPS * nq * (hd + 2);
    p.smem = sizeof(float) * (rows > merge ? rows : merge);
    return p;
}

template <int DT, int CH, int NQ>
static void launch_decode(const g4k_attn *a, const float *q, const float *k, const float *v, const float *q_norm,
                          const float *k_norm, float *part, const int *pos0, int M, const dec_plan &p, cudaStream_t s,
                          bool run) {
    static bool raised = false; /* the smem limit (64 KB and a little more), once per kernel */
    if (!raised) {
        cudaFuncSetAttribute(decode_kernel<DT, CH, NQ>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)(sizeof(float) * ((size_t)DEC_WARPS * NQ * (CH * 128 + 2) + (size_t)(NQ + 16) * CH * 128)));
        raised = true;
    }
    if (run)
        g4k_launch(decode_kernel<DT, CH, NQ>, dim3(p.splits, a->n_kv_heads, p.chunks), DEC_THREADS, p.smem, s, *a, q, k, v,
                   q_norm, k_norm, part, pos0, M, p.splits, p.chunks);
}

template <int DT, int CH>
static void launch_nq(const g4k_attn *a, const float *q, const float *k, const float *v, const float *q_norm,
                      const float *k_norm, float *part, const int *pos0, int M, const dec_plan &p, cudaStream_t s,
                      bool run) {
    switch (p.nq) { /* nq <= 64 / (CH * 4) */
    case 1: launch_decode<DT, CH, 1>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run); break;
    case 2: launch_decode<DT, CH, 2>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run); break;
    case 4: launch_decode<DT, CH, 4>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run); break;
    case 8:
        if (CH <= 2) launch_decode<DT, (CH <= 2 ? CH : 2), 8>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run);
        break;
    default:
        if (CH == 1) launch_decode<DT, 1, 16>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run);
    }
}

template <int DT>
static void launch_ch(const g4k_attn *a, const float *q, const float *k, const float *v, const float *q_norm,
                      const float *k_norm, float *part, const int *pos0, int M, const dec_plan &p, cudaStream_t s,
                      bool run) {
    switch (a->head_dim) {
    case 128: launch_nq<DT, 1>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run); break;
    case 256: launch_nq<DT, 2>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run); break;
    default: launch_nq<DT, 4>(a, q, k, v, q_norm, k_norm, part, pos0, M, p, s, run);
    }
}

extern "C" void g4k_attention_decode(const g4k_attn *a, float *q, float *k, float *v, const float *q_norm,
                                     const float *k_norm, float *o, float *scratch, const int *pos0, int M,
                                     int max_context, g4_stream s) {
    assert(!a->ring || (a->window > 0 && a->ring >= a->window + M - 1)); /* the ring contract (kernels.h) */
    if (!decode_fast(a, M)) {
        g4k_qkv_post(a, q, k, v, q_norm, k_norm, pos0, M, s);
        g4k_attention(a, q, o, pos0, M, max_context, s);
        return;
    }
    const dec_plan p = make_plan(a, M, max_context);
    switch (a->kv_dtype) {
    case G4K_KV_F32: launch_ch<G4K_KV_F32>(a, q, k, v, q_norm, k_norm, scratch, pos0, M, p, s, true); break;
    case G4K_KV_BF16: launch_ch<G4K_KV_BF16>(a, q, k, v, q_norm, k_norm, scratch, pos0, M, p, s, true); break;
    default: launch_ch<G4K_KV_FP8>(a, q, k, v, q_norm, k_norm, scratch, pos0, M, p, s, true);
    }
    g4k_launch(decode_merge, dim3(a->n_heads, M), MERGE_THREADS, sizeof(float) * p.splits, s, *a,
               (const float *)scratch, o, pos0, M, p.splits, p.nq, p.chunks);
}

/* Enough for every M' <= M; also raises the shared-memory limit of every kernel
 * those calls use, so that a graph capture of the launcher later makes no such call. */
extern "C" size_t g4k_attention_decode_scratch(const g4k_attn *a, int M, int max_context) {
    size_t bytes = 0;
    for (int m = 1; m <= M; m++) {
        if (!decode_fast(a, m)) continue;
        const dec_plan p = make_plan(a, m, max_context);
        switch (a->kv_dtype) {
        case G4K_KV_F32: launch_ch<G4K_KV_F32>(a, 0, 0, 0, 0, 0, 0, 0, m, p, 0, false); break;
        case G4K_KV_BF16: launch_ch<G4K_KV_BF16>(a, 0, 0, 0, 0, 0, 0, 0, m, p, 0, false); break;
        default: launch_ch<G4K_KV_FP8>(a, 0, 0, 0, 0, 0, 0, 0, m, p, 0, false);
        }
        const size_t b = sizeof(float) * (size_t)p.chunks * a->n_kv_heads * p.splits * p.nq * (a->head_dim + 2);
        bytes = b > bytes ? b : bytes;
    }
    return bytes;
}
