/* Choosing the next token on the GPU. CPU reference: src/engine/sampler.c.
 *
 * g4k_argmax: the greedy choice, the first maximum of each logits row, two ids
 * excluded (<image|>, <audio|>; model.md §3.4).
 *
 * g4k_sample: what g4_sample picks, token for token, for rows with per-row
 * temperature / top_k / top_p / min_p and a per-row xorshift64* state on the
 * device, so that a sampled decode step stays inside the CUDA graph.
 *   pass 1 (many blocks per row): each block keeps the top G4K_SAMPLE_TOPK
 *     candidates of its slice of the vocabulary, sorted;
 *   pass 2 (one block per row): merges the blocks' lists into the row's top
 *     G4K_SAMPLE_TOPK, then one thread runs g4_sample's arithmetic on them in
 *     the same order and precision (float logits / T - top, exp, double sums,
 *     the same top-p / min-p rules, the same draw from the stream).
 * A candidate is a 64-bit key: the logit's bits made orderable as an unsigned
 * integer (high half) and the bitwise-not of its id (low half), so that one
 * unsigned comparison gives g4_sample's order (logit descending, then id
 * ascending) and every key is distinct. Key 0 is "no candidate" (below every
 * real key); NaN logits and suppressed ids never become candidates, as in
 * g4_sample. Lists are sorted with warp-wide bitonic networks: 64 keys per
 * warp, two per lane (index lane and lane + 32). */
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/trace.cuh"

/* ------------------------------------------------------------ greedy */

/* One row is spread over ARGMAX_BLOCKS blocks (one block reading 1 MB of
 * logits took ~0.1 ms); each leaves its slice's (value, lowest index) in
 * g_best, and the last block of the row to finish (a ticket it resets for the
 * next launch) reduces those. */
#define ARGMAX_BLOCKS 64
#define ARGMAX_ROWS 8 /* rows per launch */
__device__ float g_best_v[ARGMAX_ROWS * ARGMAX_BLOCKS];
__device__ int g_best_i[ARGMAX_ROWS * ARGMAX_BLOCKS];
__device__ unsigned g_best_ticket[ARGMAX_ROWS];

/* (v, idx) := the better of itself and (ov, oi): larger value, then lower index. */
__device__ __forceinline__ void better(float &v, int &idx, float ov, int oi) {
    if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
}

__device__ void block_best(float &v, int &idx) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    for (int o = 16; o > 0; o >>= 1) better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) best_v[warp] = v, best_i[warp] = idx;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < (int)blockDim.x / 32; w++) better(v, idx, best_v[w], best_i[w]);
}

__global__ void argmax_kernel(int32_t *tokens, const float *logits, int vocab, int sup0, int sup1) {
    __shared__ bool last;
    G4K_TRACE(G4K_TR_ARGMAX, logits);
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    const int r = blockIdx.y, per = (vocab + gridDim.x - 1) / gridDim.x;
    const float *row = logits + (size_t)r * vocab;
    const int begin = blockIdx.x * per, end = begin + per < vocab ? begin + per : vocab;
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = begin + threadIdx.x; i < end; i += blockDim.x) {
        if (i == sup0 || i == sup1) continue;
        better(v, idx, row[i], i);
    }
    block_best(v, idx);
    if (threadIdx.x == 0) {
        g_best_v[r * ARGMAX_BLOCKS + blockIdx.x] = v, g_best_i[r * ARGMAX_BLOCKS + blockIdx.x] = idx;
        __threadfence();
        last = atomicAdd(&g_best_ticket[r], 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    v = -INFINITY, idx = 0x7fffffff;
    for (int b = threadIdx.x; b < (int)gridDim.x; b += blockDim.x)
        better(v, idx, __ldcg(&g_best_v[r * ARGMAX_BLOCKS + b]), __ldcg(&g_best_i[r * ARGMAX_BLOCKS + b]));
    block_best(v, idx);
    if (threadIdx.x == 0) {
        if (idx == 0x7fffffff) /* no value above -inf: the first id not excluded, as g4_argmax */
            for (idx = 0; idx == sup0 || idx == sup1; idx++) {}
        tokens[r] = idx;
        g_best_ticket[r] = 0;
    }
}

/* ------------------------------------------------------------ sampling: CUDA kernels */

#define K G4K_SAMPLE_TOPK
#define SLICE 2048        /* logits per pass-1 block: 262144 / 2048 = 128 blocks per row, about one per SM */
#define THREADS 256       /* 8 warps; a pass-1 warp scans SLICE / 8 = 256 logits, four batches of 64 */
#define FULL 0xffffffffu
typedef unsigned long long u64;

static_assert(K == 64, "the warp networks below hold 64 keys, two per lane");

__device__ __forceinline__ u64 cand_key(float x, int id, int sup0, int sup1) {
    if (isnan(x) || id == sup0 || id == sup1) return 0;
    if (x == 0.0f) x = 0.0f; /* -0 and +0 are equal logits: the id decides, as in g4_sample */
    uint32_t b = __float_as_uint(x);
    b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
    return ((u64)b << 32) | (uint32_t)~(uint32_t)id;
}

__device__ __forceinline__ int key_id(u64 key) { return (int)~(uint32_t)key; }

/* One compare-exchange step of a bitonic network over 64 keys: element i
 * (i = lane in a, lane + 32 in b) meets element i ^ j; blocks of k elements
 * alternate direction, the first (i & k == 0) descending. */
__device__ __forceinline__ void bitonic_step(u64 &a, u64 &b, int k, int j, int lane) {
    if (j == 32) { /* partners in the same lane; only in the last stage (k = 64), descending */
        const u64 hi = a > b ? a : b, lo = a > b ? b : a;
        a = hi, b = lo;
        return;
    }
    const u64 pa = __shfl_xor_sync(FULL, a, j), pb = __shfl_xor_sync(FULL, b, j);
    const bool lower = (lane & j) == 0;
    const bool desc_a = (lane & k) == 0, desc_b = ((lane + 32) & k) == 0;
    a = (lower == desc_a) ? (a > pa ? a : pa) : (a < pa ? a : pa);
    b = (lower == desc_b) ? (b > pb ? b : pb) : (b < pb ? b : pb);
}

/* Sorts the warp's 64 keys, descending. */
__device__ __forceinline__ void warp_sort(u64 &a, u64 &b, int lane) {
#pragma unroll
    for (int k = 2; k <= 64; k <<= 1)
#pragma unroll
        for (int j = k >> 1; j > 0; j >>= 1) bitonic_step(a, b, k, j, lane);
}

/* (ra, rb) := the top 64 of two descending lists (ra, rb) and (na, nb), descending:
 * element-wise max against the reversed second list is bitonic and holds the
 * top 64; the last stage of the network sorts it. */
__device__ __forceinline__ void warp_merge(u64 &ra, u64 &rb, u64 na, u64 nb, int lane) {
    const u64 ra_rev = __shfl_sync(FULL, nb, 31 - lane), rb_rev = __shfl_sync(FULL, na, 31 - lane);
    ra = ra > ra_rev ? ra : ra_rev;
    rb = rb > rb_rev ? rb : rb_rev;
#pragma unroll
    for (int j = 32; j > 0; j >>= 1) bitonic_step(ra, rb, 64, j, lane);
}

/* The block's top 64: each warp's (ra, rb) (a sorted list, or 0s) merged with
 * the lists l = warp, warp + n_warps, ... of the n_lists sorted lists at
 * lists[] (stride K), then the warps' lists merged by warp 0, which writes
 * them to out[0..K) (shared or global). Every thread calls it. */
__device__ void block_merge(u64 ra, u64 rb, const u64 *lists, int n_lists, u64 *out, u64 (*shared)[K]) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    for (int l = warp; l < n_lists; l += n_warps) {
        const u64 na = lists[(size_t)l * K + lane], nb = lists[(size_t)l * K + 32 + lane];
        const u64 least = __shfl_sync(FULL, rb, 31);
        if (__shfl_sync(FULL, na, 0) <= least) continue; /* nothing in this list makes the cut */
        warp_merge(ra, rb, na, nb, lane);
    }
    shared[warp][lane] = ra, shared[warp][32 + lane] = rb;
    __syncthreads();
    if (warp == 0) {
        for (int w = 1; w < n_warps; w++) warp_merge(ra, rb, shared[w][lane], shared[w][32 + lane], lane);
        out[lane] = ra, out[32 + lane] = rb;
    }
}

/* Pass 1: block (x, m) writes the top K keys of logits[m][x * SLICE ..) to cand[m][x][K]. */
__global__ void __launch_bounds__(THREADS) topk_slice_kernel(u64 *cand, const float *logits, int vocab, int sup0,
                                                             int sup1) {
    __shared__ u64 merge_buf[THREADS / 32][K];
    g4k_wait_inputs();
    g4k_allow_next();
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const float *row = logits + (size_t)blockIdx.y * vocab;
    const int start = blockIdx.x * SLICE + warp * (SLICE / (THREADS / 32));
    const int end = min(start + SLICE / (THREADS / 32), vocab);
    u64 ra = 0, rb = 0;
    for (int base = start; base < end; base += 64) {
        const int i0 = base + lane, i1 = base + 32 + lane;
        u64 a = i0 < end ? cand_key(row[i0], i0, sup0, sup1) : 0;
        u64 b = i1 < end ? cand_key(row[i1], i1, sup0, sup1) : 0;
        const u64 least = __shfl_sync(FULL, rb, 31);
        if (!__any_sync(FULL, a > least || b > least)) continue;
        warp_sort(a, b, lane);
        warp_merge(ra, rb, a, b, lane);
    }
    u64 *out = cand + ((size_t)blockIdx.y * gridDim.x + blockIdx.x) * K;
    block_merge(ra, rb, NULL, 0, out, merge_buf);
}

__device__ __forceinline__ double next_uniform(uint64_t *state) { /* xorshift64*, 53 bits: as sampler.c */
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return __ddiv_rn(__ull2double_rn((x * 0x2545f4914f6cdd1dull) >> 11), 9007199254740992.0);
}

/* exp rounded to float from a double exp (1 double ulp): the correctly rounded
 * expf except within ~1e-16 of a rounding boundary. glibc's expf (the CPU
 * reference) is within 0.502 ulp, so the two can differ by one float ulp in
 * rare inputs; see sample_kernel. */
__device__ __forceinline__ float exp_f32(float x) { return __double2float_rn(exp((double)x)); }

/* Pass 2: block m merges cand[m][0..n_lists) and writes tokens[m]. Every
 * operation of g4_sample's arithmetic is an explicit round-to-nearest
 * intrinsic, so that nvcc fuses nothing into an FMA the CPU does not do. */
__global__ void __launch_bounds__(THREADS) sample_kernel(int32_t *tokens, const u64 *cand, int n_lists,
                                                         const float *logits, int vocab, const g4k_sampling *params,
                                                         uint64_t *rng, int sup0, int sup1) {
    __shared__ u64 merge_buf[THREADS / 32][K];
    __shared__ u64 top[K];
    __shared__ float probs[K];
    g4k_wait_inputs();
    g4k_allow_next();
    const int m = blockIdx.x, lane = threadIdx.x % 32;
    block_merge(0, 0, cand + (size_t)m * n_lists * K, n_lists, top, merge_buf);
    if (threadIdx.x >= 32) return;
    __syncwarp();
    const float *row = logits + (size_t)m * vocab;
    const g4k_sampling p = params[m];
    /* valid keys form a prefix (0 sorts last) */
    const int n = __popc(__ballot_sync(FULL, top[lane] != 0)) + __popc(__ballot_sync(FULL, top[32 + lane] != 0));
    if (p.temperature <= 0.0f) { /* g4_argmax: the first non-suppressed id, replaced by any strictly greater logit */
        if (lane == 0) {
            int first = 0;
            while (first == sup0 || first == sup1) first++;
            if (first >= vocab) tokens[m] = -1;
            else if (isnan(row[first]) || n == 0) tokens[m] = first; /* nothing compares greater than NaN */
            else tokens[m] = key_id(top[0]);
        }
        return;
    }
    if (n == 0) { /* g4_sample: no candidates (all NaN or suppressed) -> g4_argmax with nothing excluded */
        if (lane == 0) {
            int best = 0;
            for (int i = 1; i < vocab; i++)
                if (row[i] > row[best]) best = i;
            tokens[m] = best;
        }
        return;
    }
    const int nk = p.top_k < n ? p.top_k : n; /* the launcher saw 1 <= top_k <= K */
    const float T = p.temperature;
    const float t0 = __fdiv_rn(row[key_id(top[0])], T);
    for (int i = lane; i < nk; i += 32) probs[i] = exp_f32(__fsub_rn(__fdiv_rn(row[key_id(top[i])], T), t0));
    __syncwarp();
    double sum = 0.0; /* in g4_sample's order, so one lane */
    if (lane == 0)
        for (int i = 0; i < nk; i++) sum = __dadd_rn(sum, (double)probs[i]);
    const float sumf = __double2float_rn(__shfl_sync(FULL, sum, 0));
    for (int i = lane; i < nk; i += 32) probs[i] = __fdiv_rn(probs[i], sumf); /* element-wise, as g4_sample's loop */
    __syncwarp();
    if (lane != 0) return;
    int keep = nk;
    double cum = 0.0;
    for (int i = 0; i < nk; i++) {
        if (p.top_p < 1.0f && cum >= (double)p.top_p && keep == nk) keep = i;
        cum = __dadd_rn(cum, (double)probs[i]);
        if (p.min_p > 0.0f && probs[i] < __fmul_rn(p.min_p, probs[0]) && i < keep) keep = i;
    }
    if (keep < 1) keep = 1;
    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass = __dadd_rn(mass, (double)probs[i]);
    uint64_t state = rng[m];
    double u = __dmul_rn(next_uniform(&state), mass);
    rng[m] = state;
    int32_t tok = key_id(top[keep - 1]);
    for (int i = 0; i < keep; i++) {
        u = __dsub_rn(u, (double)probs[i]);
        if (u <= 0.0) {
            tok = key_id(top[i]);
            break;
        }
    }
    tokens[m] = tok;
}

/* ------------------------------------------------------------ kernel launchers */

extern "C" void g4k_argmax(int32_t *tokens, const float *logits, int M, int vocab, int sup0, int sup1, g4_stream s) {
    for (int m = 0; m < M; m += ARGMAX_ROWS) {
        const int rows = M - m < ARGMAX_ROWS ? M - m : ARGMAX_ROWS;
        const int blocks = vocab < 64 * 256 ? 1 : ARGMAX_BLOCKS; /* small vocabularies: one block is enough */
        g4k_launch(argmax_kernel, dim3(blocks, rows), 256, 0, s, tokens + m, logits + (size_t)m * vocab, vocab, sup0,
                   sup1);
    }
}

static int slices(int vocab) { return (vocab + SLICE - 1) / SLICE; }

extern "C" size_t g4k_sample_scratch_bytes(int M, int vocab) { return sizeof(u64) * K * (size_t)M * slices(vocab); }

extern "C" int g4k_sample_supported(const g4k_sampling *p) {
    return p->temperature <= 0.0f || (p->top_k >= 1 && p->top_k <= K);
}

extern "C" int g4k_sample(int32_t *tokens, const float *logits, int M, int vocab, const g4k_sampling *host_params,
                          const g4k_sampling *params, uint64_t *rng, void *scratch, int sup0, int sup1, g4_stream s) {
    for (int m = 0; m < M; m++)
        if (!g4k_sample_supported(&host_params[m])) return -1;
    const int n = slices(vocab);
    g4k_launch(topk_slice_kernel, dim3(n, M), THREADS, 0, s, (u64 *)scratch, logits, vocab, sup0, sup1);
    g4k_launch(sample_kernel, M, THREADS, 0, s, tokens, (const u64 *)scratch, n, logits, vocab, params, rng, sup0,
               sup1);
    return 0;
}
