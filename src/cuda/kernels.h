/* CUDA kernel launchers: plain C functions, one per operation, called by the
 * CUDA forward pass (cuda_forward.c). Each kernel has a CPU reference in
 * src/cpu/ (same math, fp32) and is checked against it by the GPU tests.
 * All pointers are device pointers; every launcher runs on `stream`. */
#ifndef G4_CUDA_KERNELS_H
#define G4_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *g4_stream;

/* A weight matrix on the GPU: FP8 E4M3 codes + fp32 128x128 block scales, or BF16.
 *
 * Layout: row-major, or (tiled = 1; rows % 16 == 0, row bytes % 64 == 0) in
 * 16-row tiles so that the decode GEMV streams each warp's share of the
 * weights as one contiguous run (DRAM serves that ~20 % faster than 16 rows
 * read side by side; perf-log.md): tile T (rows 16T..16T+15) is row_bytes / 64
 * chunks of 1 KB; chunk s holds the row bytes 64s..64s+63, and within it the
 * 32 bytes at 32 * (4g + t) are row 16T + g, bytes 64s + 16t..+15, then row
 * 16T + g + 8, the same bytes (g < 8, t < 4): lane 4g + t of an MMA warp
 * finds its two 16-byte A-fragment loads side by side. G4K_TILED_OFFSET
 * gives where byte b of row r lies. Scales stay [ceil(rows/128)][ceil(cols/128)]. */
typedef struct {
    int fp8;                 /* 1: codes + scales; 0: BF16 values */
    int rows, cols;
    const void *data;
    const float *scales;     /* [ceil(rows/128)][ceil(cols/128)] */
    int tiled;               /* 1 = 16-row tiles (above), 0 = row-major */
} g4_dmatrix;

#define G4K_TILED_OFFSET(r, b, row_bytes)                                                                  \
    ((((size_t)(r) / 16) * ((row_bytes) / 64) + (size_t)(b) / 64) * 1024 + (((r) % 8) * 4 + ((b) % 64) / 16) * 32 + \
     (((r) % 16) / 8) * 16 + (b) % 16)

/* dst (tiled) = src (row-major [rows][row_bytes]); rows % 16 == 0, row_bytes % 64 == 0. Rows
 * 16k.. of a tiled matrix are its bytes from 16k * row_bytes on, so a matrix can be tiled in
 * pieces of whole tiles. */
void g4k_retile(void *dst, const void *src, int rows, int row_bytes, g4_stream stream);

/* y[m][r] = sum_c x[m][c] W[r][c] for m < M (M <= 8): one pass over W serves
 * every m. Up to 3 matrices with the same cols run in one launch (q, k, v):
 * matrix i writes y_i. */
void g4k_gemv(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, g4_stream stream);

/* The same with its columns in up to `splits` parts: part p writes its
 * partial sums to y[0] + p * M * rows (the consumer adds the parts). Returns
 * the number of parts written (1 where the kernel adds them up itself). */
int g4k_gemv_split(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, int splits,
                    g4_stream stream);

/* GeGLU: y[m][r] = gelu_tanh(x W_gate^T)[m][r] * (x W_up^T)[m][r]. */
void g4k_gemv_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                    g4_stream stream);

/* Prefill GEMM on tensor cores for M > 8 (any M >= 1 works): y[m][r] = sum_c x[m][c] W[r][c],
 * x fp32 [M][cols], y fp32 [M][rows]. FP8 or BF16 weights stay as they are in memory; x is
 * rounded to FP16 once (rel. error ~2e-4). Uses process-wide scratch that grows on demand
 * (not thread-safe; a call that grows it cannot be graph-captured). See gemm.cu. */
void g4k_gemm(const g4_dmatrix *w, float *y, const float *x, int M, g4_stream stream);

/* Frees g4k_gemm's scratch (it grows again on the next call). */
void g4k_gemm_release(void);

/* The same with the GeGLU epilogue: y[m][r] = gelu_tanh(x gate^T)[m][r] * (x up^T)[m][r]. */
void g4k_gemm_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                    g4_stream stream);

/* out[m] = rms(x[m]; w) for M rows of n. */
void g4k_rmsnorm(float *out, const float *x, const float *w, int M, int n, float eps, g4_stream stream);

/* h[m] += rms(y[m]; w_post); then optionally h[m] *= scalar; then out[m] = rms(h[m]; w_next)
 * (w_next NULL: no out). The sandwich norm + residual + layer_scalar + the next pre-norm.
 * y holds `parts` split-K partial sums ([parts][M][n]), added up first. */
void g4k_residual_norm(float *h, const float *y, int parts, const float *w_post, float scalar, float *out,
                       const float *w_next, int M, int n, float eps, g4_stream stream);

/* h[m] = E[tok[m]] * scale (E BF16 [vocab][n], row-major or tiled). */
void g4k_embed(float *h, const g4_dmatrix *E, const int32_t *tokens, int M, float scale, g4_stream stream);

typedef enum { G4K_KV_F32 = 0, G4K_KV_BF16 = 1, G4K_KV_FP8 = 2 } g4k_kv_dtype;

/* Per-layer attention geometry and cache. */
typedef struct {
    int n_heads, n_kv_heads, head_dim;
    int rope_pairs;
    float rope_theta;
    int window;              /* 0: causal only */
    int ring;                /* rows of this layer's cache: 0 = linear (position p at row p); > 0 = a
                                sliding-window ring, position p at row p % ring. A ring needs window > 0
                                and ring >= window + (tokens written per call) - 1 (window + CHUNK is
                                always enough), so that a call never overwrites a key it still reads. */
    float eps;
    g4k_kv_dtype kv_dtype;
    float k_scale, v_scale;  /* FP8 cache scales */
    void *k_cache, *v_cache; /* this sequence's rows: [ring ? ring : max_context][n_kv_heads * head_dim] */
} g4k_attn;

/* Where the raw q, k and v projections of M tokens are: token m's q at q + m * ld_q,
 * and so on. Three buffers, or the fused q/k/v GEMM's [M][ld] output at three column
 * offsets (then ld_q = ld_k = ld_v = ld); v may equal k (k == v layers). */
typedef struct {
    const float *q, *k, *v;
    int ld_q, ld_k, ld_v;
} g4k_qkv_in;

/* For M tokens at positions *pos0 + m: q/k RMSNorm (q_norm, k_norm) + RoPE and the
 * weightless v norm; q written to q_out [M][n_heads * head_dim] (may be in->q: each
 * head is read before it is written), the K/V rows to the cache; in is only read. pos0
 * is a device pointer so that a captured graph can be replayed at the next position.
 * Returns -1 (nothing launched) for an odd head_dim or one above G4K_MAX_HEAD_DIM. */
#define G4K_MAX_HEAD_DIM 1024
int g4k_qkv_post(const g4k_attn *a, const g4k_qkv_in *in, float *q_out, const float *q_norm, const float *k_norm,
                 const int *pos0, int M, g4_stream stream);

/* o[m][h] = softmax(q[m][h] . K^T) V over the visible keys (scale 1.0), q already
 * post-processed and the M new rows already in the cache (g4k_qkv_post). M <= 8: one
 * block per (token, head); M > 8 (prefill) with head_dim 128, 256 or 512 and a BF16 or
 * FP8 cache: flash-style kernel on tensor cores (FP16 operands: q split in two FP16
 * parts, P rounded to FP16, max|o - ref| ~3e-4; cache values must fit FP16; fp32 softmax
 * and accumulation); an F32 cache (unless G4_PREFILL_ATTN=tc), head_dim 64, or any call
 * with G4_PREFILL_ATTN=simt or G4_EXACT_PREFILL=1 in the environment: tiled flash-style
 * kernel in fp32 SIMT; other head dims: a generic per-(token, head) kernel. */
void g4k_attention(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, int max_context,
                   g4_stream stream);

/* Decode attention with the q/k/v post-processing fused in: everything g4k_qkv_post +
 * g4k_attention do, for M (1..8) tokens at positions *pos0 + m, in one launch
 * (split-K attention over the keys, the last block of each head group merging the splits;
 * G4_DECODE_ATTN=v2merge: a second launch merges them; =v1: the first two kernels). pos0 is a device
 * pointer; the grid depends only on M, max_context and the geometry, so the call
 * can be captured in a graph and replayed at later positions.
 *   q [M][n_heads*hd], k, v [M][n_kv_heads*hd]: raw projections, only read (v may be k
 *     itself for k_eq_v), except that the fallback path writes the post-processed q to q.
 *   o [M][n_heads*hd]: the attention output.
 *   scratch: g4k_attention_decode_scratch(a, M, max_context) bytes of device memory for
 *     the splits' arrival tickets and partial results. Its first G4K_DECODE_TICKET_BYTES
 *     must be zero before the first call (cudaMemset once); every call leaves them zero.
 *     May be shared by layers run one after another on the stream (the largest value over
 *     the layer kinds).
 *   max_context: >= every *pos0 + M this captured call will see (it sizes the splits;
 *     the same value for the scratch size).
 * The new K/V rows are written to the cache (row pos, or pos % ring), rounded through the cache
 * dtype, and attention uses those rounded values for the new keys, as the CPU does.
 * The fast path reads *pos0 and the cache rows below *pos0 before its PDL wait (it overlaps
 * the q/k/v GEMV): both must be written before the first kernel of the PDL chain this call is
 * in starts (by a copy or kernel earlier in the stream that is not PDL-launched into it, as the
 * host's position copy and the previous step's graph are), never by a kernel just before it.
 * Fast path: head_dim 128, 256 or 512 and M <= 8; anything else falls back to
 * g4k_qkv_post + g4k_attention. */
#define G4K_DECODE_TICKET_BYTES 4096
void g4k_attention_decode(const g4k_attn *a, float *q, float *k, float *v, const float *q_norm,
                          const float *k_norm, float *o, float *scratch, const int *pos0, int M, int max_context,
                          g4_stream stream);

/* Bytes of scratch g4k_attention_decode needs for this geometry and max_context, for any
 * M' <= M (0 for the fallback path). Depends on the GPU's SM count: call it on the same
 * device. Call it (once per layer geometry, with the largest M) before capturing
 * g4k_attention_decode in a graph: it also raises the decode kernels' shared-memory limit,
 * a call better kept out of a capture. */
size_t g4k_attention_decode_scratch(const g4k_attn *a, int M, int max_context);

/* logits[m][v] = cap * tanh((x[m] . E[v]) / cap) (cap 0: none), E BF16 [vocab][n]. */
void g4k_lm_head(float *logits, const float *x, const g4_dmatrix *E, int M, float cap, g4_stream stream);

/* tokens[m] = argmax of logits[m] (first maximum), ids in suppress[] excluded. */
void g4k_argmax(int32_t *tokens, const float *logits, int M, int vocab, int sup0, int sup1, g4_stream stream);

/* Sampling on the GPU (sample.cu): tokens[m] = what g4_sample (src/engine/sampler.c)
 * picks from logits[m] with params[m] and the xorshift64* state rng[m] (advanced
 * as g4_sample advances it), for M rows. Rows with temperature > 0 need
 * 1 <= top_k <= G4K_SAMPLE_TOPK (the candidate lists are that long; Gemma's
 * default top_k is 64); greedy rows (temperature <= 0) take the first maximum,
 * like g4k_argmax. params and rng are device arrays [M] (so that a captured
 * graph reads the current ones); host_params holds the same values on the host,
 * for the check: when a row cannot be sampled here, nothing is launched and the
 * launcher returns -1 (the caller samples on the host). scratch: device memory
 * of g4k_sample_scratch_bytes(M, vocab). */
#define G4K_SAMPLE_TOPK 64
typedef struct {
    float temperature;       /* <= 0: greedy */
    int top_k;
    float top_p;             /* >= 1: no limit */
    float min_p;             /* <= 0: no limit */
} g4k_sampling;
int g4k_sample_supported(const g4k_sampling *p);
size_t g4k_sample_scratch_bytes(int M, int vocab);
int g4k_sample(int32_t *tokens, const float *logits, int M, int vocab, const g4k_sampling *host_params,
               const g4k_sampling *params, uint64_t *rng, void *scratch, int sup0, int sup1, g4_stream stream);

/* After a greedy step at position *pos: hist[*pos + 1] = *token, then
 * *pos += 1 (so a replayed graph moves forward). */
void g4k_record_advance(int *pos, const int32_t *token, int32_t *hist, g4_stream stream);

/* ---- W8A8 prefill GEMM through cuBLASLt block scaling (gemm_w8a8.cu; optional, G4_PREFILL=w8a8) ----
 * y[m][r] = sum_c xq[m][c] W[r][c] where xq is x quantized per token per 128-wide
 * column group to E4M3 (scale = amax / 448): the weights' 128x128 block scales and
 * the activation scales are applied by cuBLASLt (Hopper sm_90 only, cuBLAS >= 12.9),
 * fp32 accumulation, fp32 y. Relative error against the unquantized product: a few
 * percent (E4M3 rounding of x). Returns 0 when the work is enqueued; otherwise y is
 * not (fully) written and the caller uses g4k_gemm instead: -1 (nothing enqueued)
 * when this GPU, libcublasLt or shape is not supported (N or K not a multiple of
 * 128, x or the codes not 16-byte aligned), or when a first call of a shape or a
 * scratch growth would happen during graph capture; -2 on a CUDA or cuBLAS error
 * (work may have been enqueued). g4k_gemm_w8a8_error() says why. Process-wide state and scratch, not thread-safe;
 * graph-capturable once the same shape has run outside capture (a later call that
 * grows a scratch buffer invalidates graphs captured before it). */
int g4k_gemm_w8a8(const g4_dmatrix *w, float *y, const float *x, int M, g4_stream stream);

/* Up to 3 matrices with the same cols against one quantization of x (q, k, v):
 * matrix i (w[i]) writes y[i]. */
int g4k_gemm_w8a8_multi(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, g4_stream stream);

/* The same with GeGLU: y[m][r] = gelu_tanh(xq gate^T)[m][r] * (xq up^T)[m][r]. */
int g4k_gemm_w8a8_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                        g4_stream stream);

/* Why the last call returned nonzero (a static string, valid until the next call). */
const char *g4k_gemm_w8a8_error(void);

/* Frees the cuBLASLt handle, plans and scratch (they are created again on the next call). */
void g4k_gemm_w8a8_release(void);

#ifdef __cplusplus
}
#endif

#endif
