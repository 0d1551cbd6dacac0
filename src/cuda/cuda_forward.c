/* The Gemma 4 forward pass on the GPU: the same steps as src/cpu/forward.c,
 * each a kernel launch (src/cuda/kernels.h). Activations are fp32 [tokens][width]
 * device arrays; a call handles up to CHUNK tokens at a time (longer prompts
 * are prefilled chunk by chunk, the KV cache carrying the earlier chunks), and
 * the GEMVs take up to GEMV_M tokens per pass over the weights. */
#include "cuda/cuda_backend.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/kernels.h"
#include "cuda/trace.h"
#include "engine/sampler.h"
#include "util/numerics.h"

#define CHUNK 512 /* tokens per forward chunk: a 145-token prompt reads the weights once */
#define GEMV_M 8  /* tokens per GEMV launch */
#define SPLITS 4  /* split-K parts of o_proj and down_proj in decode: their 3840 rows alone fill too few SMs */

typedef struct {
    g4_dmatrix q, k, v, o, gate, up, down;
    g4_dmatrix qkv;          /* q, k (and v) as one matrix (views into one allocation), or data NULL */
    float *q_norm, *k_norm, *input_norm, *post_attn_norm, *pre_ffn_norm, *post_ffn_norm;
    float layer_scalar, k_scale, v_scale;
} layer_dev;

/* Host -> GPU copies through two pinned staging buffers: the host threads
 * copy (and page in) the next piece of the mapped checkpoint while the
 * previous piece crosses the bus. */
#define STAGE_BYTES (256u << 20)
typedef struct {
    void *pinned[2];
    cudaEvent_t done[2];
    int cur;
    void *retile;         /* device buffer: a matrix lands here row-major, then g4k_retile tiles it */
    size_t retile_bytes;
} uploader;

/* Per-stage timing of one eager decode step (g4 bench --profile): an event
 * after every stage, summed by stage. */
typedef enum {
    ST_EMBED, ST_NORM, ST_QKV, ST_QKV_POST, ST_ATTN, ST_O, ST_RESID, ST_GEGLU, ST_DOWN, ST_HEAD, ST_SAMPLE, ST_COUNT
} stage;
static const char *stage_names[ST_COUNT] = {"embed", "rmsnorm", "gemv q/k/v", "q/k/v norms+rope+kv write",
                                            "attention", "gemv o", "residual+norms", "gemv gate/up+GeGLU",
                                            "gemv down", "lm head+softcap", "argmax"};
#define MAX_MARKS 1024
typedef struct {
    bool on;
    int n;
    cudaEvent_t ev[MAX_MARKS + 1];
    int stage[MAX_MARKS];
} profiler;

struct g4_cuda {
    g4_config cfg;
    cudaStream_t stream;
    layer_dev *layers;
    g4_dmatrix embed;            /* [vocab][hidden] BF16, tied head */
    float *final_norm;
    g4k_kv_dtype kv_dtype;
    int max_seqs, max_context;
    void **k_cache, **v_cache;   /* [seq * n_layers + layer] -> [max_context][kv_dim] */
    /* scratch for CHUNK tokens */
    float *h, *x, *q, *k, *v, *attn, *proj, *ffn, *logits;
    float *host_logits;          /* [GEMV_M][vocab] pinned: D2H copies from pageable memory are slower */
    int32_t *tokens;             /* [CHUNK] input ids; tokens[0] also the greedy loop's next id */
    int32_t *hist;               /* [max_context + 1] greedy outputs by position */
    float *attn_parts;           /* g4k_attention_decode's partial results, shared by the layers */
    int *pos;                    /* [max_seqs + 1] device positions; the last one is the scratch slot */
    cudaGraphExec_t graph;
    int graph_seq;
    /* sampled decode (allocated on first use): the step's parameters and
     * random state on the device, the sampler's scratch, and its own graph */
    g4k_sampling *sample_params; /* [1] */
    uint64_t *rng;               /* [1] */
    void *sample_scratch;
    cudaGraphExec_t sample_graph;
    int sample_graph_seq;
    void **allocs;
    int n_allocs;
    uploader up;
    profiler prof;
};

static void mark(g4_cuda *c, stage st) {
    profiler *p = &c->prof;
    if (!p->on || p->n >= MAX_MARKS) return;
    p->stage[p->n] = st;
    cudaEventRecord(p->ev[++p->n], c->stream);
}

static int cuda_fail(g4_err *err, cudaError_t e, const char *what) {
    return g4_errorf(err, "CUDA: %s: %s", what, cudaGetErrorString(e));
}
#define CK(call, what) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) return cuda_fail(err, e_, what); } while (0)

static void *dev_alloc(g4_cuda *c, size_t bytes, g4_err *err) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        g4_errorf(err, "CUDA: cannot allocate %.1f MB on the GPU: %s", bytes / 1e6, cudaGetErrorString(e));
        return NULL;
    }
    c->allocs = realloc(c->allocs, sizeof(void *) * (c->n_allocs + 1));
    c->allocs[c->n_allocs++] = p;
    return p;
}

static int uploader_init(uploader *u, g4_err *err) {
    for (int i = 0; i < 2; i++) {
        CK(cudaMallocHost(&u->pinned[i], STAGE_BYTES), "pinned staging buffer");
        CK(cudaEventCreateWithFlags(&u->done[i], cudaEventDisableTiming), "event");
    }
    return 0;
}

static void uploader_free(uploader *u) {
    for (int i = 0; i < 2; i++) {
        if (u->pinned[i]) cudaFreeHost(u->pinned[i]);
        if (u->done[i]) cudaEventDestroy(u->done[i]);
    }
    if (u->retile) cudaFree(u->retile); /* waits for the GPU: the last g4k_retile may still read it */
}

static int stage_copy(g4_cuda *c, char *dst, const char *src, size_t bytes, g4_err *err) {
    uploader *u = &c->up;
    for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
        const size_t n = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
        CK(cudaEventSynchronize(u->done[u->cur]), "staging");
        char *stage = u->pinned[u->cur];
        const long pieces = (long)((n + (1 << 20) - 1) >> 20);
#pragma omp parallel for schedule(dynamic)
        for (long p = 0; p < pieces; p++) {
            const size_t at = (size_t)p << 20, len = n - at < (1u << 20) ? n - at : (1u << 20);
            memcpy(stage + at, src + off + at, len);
        }
        CK(cudaMemcpyAsync(dst + off, stage, n, cudaMemcpyHostToDevice, c->stream), "upload");
        CK(cudaEventRecord(u->done[u->cur], c->stream), "staging");
        u->cur ^= 1;
    }
    return 0;
}

static void *upload(g4_cuda *c, const void *host, size_t bytes, g4_err *err) {
    void *d = dev_alloc(c, bytes, err);
    if (d && stage_copy(c, d, host, bytes, err)) return NULL;
    return d;
}

static bool prefill_w8a8(void);

/* Weights go to the GPU in 16-row tiles (kernels.h) where every kernel that
 * reads them takes tiles: FP8 layer matrices of whole tiles and 128-wide K
 * blocks (decode GEMV, wgmma prefill GEMM), and the BF16 embedding (embedding
 * lookup, LM head GEMV). Row-major otherwise (BF16 layer matrices: the
 * mma.sync GEMM reads row-major), and for every layer matrix under
 * G4_PREFILL=w8a8 (cuBLASLt reads row-major only); G4_WEIGHT_LAYOUT=rows keeps
 * everything row-major (to compare). */
static bool tiles_wanted(void) {
    const char *layout = getenv("G4_WEIGHT_LAYOUT");
    return !(layout && !strcmp(layout, "rows"));
}

static bool tile_matrix(const g4_matrix *m) {
    return tiles_wanted() && m->format == G4_MAT_FP8_BLOCK && m->rows % 16 == 0 && m->cols % 128 == 0 &&
           !prefill_w8a8();
}

static bool tile_embedding(const g4_matrix *m) { return tiles_wanted() && m->rows % 16 == 0 && m->cols % 32 == 0; }

/* m's codes (or BF16 values) to dst, tiled or not: tiles are staged row-major
 * in the uploader's device buffer, 64 MB of whole tiles at a time, and
 * rearranged on the GPU. */
static int upload_codes(g4_cuda *c, char *dst, const g4_matrix *m, bool tiled, g4_err *err) {
    const size_t row_bytes = (size_t)m->cols * (m->format == G4_MAT_FP8_BLOCK ? 1 : 2);
    if (!tiled) return stage_copy(c, dst, m->data, m->rows * row_bytes, err);
    uploader *u = &c->up;
    int piece = (int)(((64u << 20) / row_bytes) / 16 * 16);
    if (piece < 16) piece = 16;
    if (piece > m->rows) piece = m->rows;
    if (u->retile_bytes < piece * row_bytes) {
        if (u->retile) cudaFree(u->retile);
        u->retile_bytes = 0;
        CK(cudaMalloc(&u->retile, piece * row_bytes), "weight retiling buffer");
        u->retile_bytes = piece * row_bytes;
    }
    for (int r = 0; r < m->rows; r += piece) {
        const int n = m->rows - r < piece ? m->rows - r : piece;
        if (stage_copy(c, u->retile, (const char *)m->data + r * row_bytes, n * row_bytes, err)) return -1;
        g4k_retile(dst + r * row_bytes, u->retile, n, (int)row_bytes, c->stream);
        CK(cudaGetLastError(), "weight retiling");
    }
    return 0;
}

static int upload_matrix(g4_cuda *c, g4_dmatrix *d, const g4_matrix *m, g4_err *err) {
    memset(d, 0, sizeof *d);
    if (!m->data) return 0;
    d->rows = m->rows, d->cols = m->cols, d->fp8 = m->format == G4_MAT_FP8_BLOCK, d->tiled = tile_matrix(m);
    const size_t n = (size_t)m->rows * m->cols;
    if (!(d->data = dev_alloc(c, d->fp8 ? n : 2 * n, err)) || upload_codes(c, (char *)d->data, m, d->tiled, err))
        return -1;
    if (d->fp8 && !(d->scales = upload(c, m->scales, sizeof(float) * g4_qblocks(m->rows) * g4_qblocks(m->cols), err)))
        return -1;
    return 0;
}

static float *upload_vec(g4_cuda *c, const float *v, int n, g4_err *err) {
    return v ? upload(c, v, sizeof(float) * n, err) : NULL;
}

/* q, k and v into one allocation, rows one after another, so that prefill
 * runs one GEMM over all of them (the small k/v GEMMs alone fill few SMs).
 * Needs the same format and columns, and whole 128-row scale blocks per
 * matrix so that the scales concatenate too; else they are uploaded apart. */
static bool can_concat(const g4_matrix *const *m, int n) {
    for (int i = 0; i < n; i++)
        if (m[i]->format != m[0]->format || m[i]->cols != m[0]->cols ||
            (m[i]->format == G4_MAT_FP8_BLOCK && m[i]->rows % 128))
            return false;
    return true;
}

static int upload_qkv(g4_cuda *c, layer_dev *d, const g4_layer_weights *lw, g4_err *err) {
    const g4_matrix *src[3] = {&lw->q, &lw->k, &lw->v};
    g4_dmatrix *dst[3] = {&d->q, &d->k, &d->v};
    const int n = lw->v.data ? 3 : 2;
    memset(&d->qkv, 0, sizeof d->qkv);
    if (!can_concat(src, n)) {
        for (int i = 0; i < n; i++)
            if (upload_matrix(c, dst[i], src[i], err)) return -1;
        return 0;
    }
    const bool fp8 = src[0]->format == G4_MAT_FP8_BLOCK;
    const int cols = src[0]->cols, scale_cols = g4_qblocks(cols);
    int rows = 0;
    for (int i = 0; i < n; i++) rows += src[i]->rows;
    char *data = dev_alloc(c, (size_t)rows * cols * (fp8 ? 1 : 2), err);
    float *scales = fp8 ? dev_alloc(c, sizeof(float) * (rows / 128) * scale_cols, err) : NULL;
    if (!data || (fp8 && !scales)) return -1;
    /* tiles of a part stay whole (rows % 128), so the parts' tiles concatenate into the whole's */
    const int tiled = tile_matrix(src[0]);
    d->qkv = (g4_dmatrix){.fp8 = fp8, .rows = rows, .cols = cols, .data = data, .scales = scales, .tiled = tiled};
    size_t at = 0, scale_at = 0;
    for (int i = 0; i < n; i++) {
        const size_t bytes = (size_t)src[i]->rows * cols * (fp8 ? 1 : 2);
        *dst[i] = (g4_dmatrix){.fp8 = fp8, .rows = src[i]->rows, .cols = cols, .data = data + at,
                               .scales = fp8 ? scales + scale_at : NULL, .tiled = tiled};
        if (upload_codes(c, data + at, src[i], tiled, err)) return -1;
        if (fp8) {
            const size_t n_scales = (size_t)(src[i]->rows / 128) * scale_cols;
            if (stage_copy(c, (char *)(scales + scale_at), (const char *)src[i]->scales, sizeof(float) * n_scales, err))
                return -1;
            scale_at += n_scales;
        }
        at += bytes;
    }
    return 0;
}

static int upload_layer(g4_cuda *c, const g4_weights *w, int l, g4_err *err) {
    const g4_layer_weights *lw = &w->layers[l];
    layer_dev *d = &c->layers[l];
    const int hd = c->cfg.layer[l].head_dim, hidden = c->cfg.hidden;
    if (upload_qkv(c, d, lw, err) || upload_matrix(c, &d->o, &lw->o, err) ||
        upload_matrix(c, &d->gate, &lw->gate, err) || upload_matrix(c, &d->up, &lw->up, err) ||
        upload_matrix(c, &d->down, &lw->down, err))
        return -1;
    if (!(d->q_norm = upload_vec(c, lw->q_norm, hd, err)) || !(d->k_norm = upload_vec(c, lw->k_norm, hd, err)) ||
        !(d->input_norm = upload_vec(c, lw->input_norm, hidden, err)) ||
        !(d->post_attn_norm = upload_vec(c, lw->post_attn_norm, hidden, err)) ||
        !(d->pre_ffn_norm = upload_vec(c, lw->pre_ffn_norm, hidden, err)) ||
        !(d->post_ffn_norm = upload_vec(c, lw->post_ffn_norm, hidden, err)))
        return -1;
    d->layer_scalar = lw->layer_scalar;
    d->k_scale = c->kv_dtype == G4K_KV_FP8 ? lw->k_scale : 1.0f;
    d->v_scale = c->kv_dtype == G4K_KV_FP8 ? lw->v_scale : 1.0f;
    return 0;
}

/* Rows of a layer's cache: sliding layers keep a ring of window + CHUNK rows
 * (a prefill chunk never overwrites keys its own queries still read), when
 * that is smaller than the context. 0: linear, one row per position. */
static int ring_rows(const g4_cuda *c, int l) {
    const int window = c->cfg.layer[l].window;
    return window > 0 && window + CHUNK < c->max_context ? window + CHUNK : 0;
}

static int alloc_cache(g4_cuda *c, g4_err *err) {
    const size_t elem = c->kv_dtype == G4K_KV_F32 ? 4 : c->kv_dtype == G4K_KV_BF16 ? 2 : 1;
    const int L = c->cfg.n_layers;
    c->k_cache = calloc((size_t)c->max_seqs * L, sizeof(void *));
    c->v_cache = calloc((size_t)c->max_seqs * L, sizeof(void *));
    for (int s = 0; s < c->max_seqs; s++) {
        for (int l = 0; l < L; l++) {
            const int rows = ring_rows(c, l) ? ring_rows(c, l) : c->max_context;
            size_t bytes = (size_t)rows * g4_layer_kv_dim(&c->cfg, l) * elem;
            if (!(c->k_cache[s * L + l] = dev_alloc(c, bytes, err)) || !(c->v_cache[s * L + l] = dev_alloc(c, bytes, err)))
                return -1;
        }
    }
    return 0;
}

static int max_width(const g4_config *cfg) {
    int m = cfg->hidden > cfg->ffn ? cfg->hidden : cfg->ffn;
    for (int l = 0; l < cfg->n_layers; l++) m = g4_layer_q_dim(cfg, l) > m ? g4_layer_q_dim(cfg, l) : m;
    return m;
}

static int alloc_scratch(g4_cuda *c, g4_err *err) {
    const size_t wide = (size_t)CHUNK * max_width(&c->cfg) * sizeof(float);
    const size_t hid = (size_t)CHUNK * c->cfg.hidden * sizeof(float);
    if (!(c->h = dev_alloc(c, hid, err)) || !(c->x = dev_alloc(c, hid, err)) || !(c->q = dev_alloc(c, wide, err)) ||
        !(c->k = dev_alloc(c, wide, err)) || !(c->v = dev_alloc(c, wide, err)) ||
        !(c->attn = dev_alloc(c, wide, err)) || !(c->proj = dev_alloc(c, SPLITS * hid, err)) ||
        !(c->ffn = dev_alloc(c, wide, err)) ||
        !(c->logits = dev_alloc(c, (size_t)GEMV_M * c->cfg.vocab_size * sizeof(float), err)) ||
        !(c->tokens = dev_alloc(c, CHUNK * sizeof(int32_t), err)) ||
        !(c->hist = dev_alloc(c, (size_t)(c->max_context + 1) * sizeof(int32_t), err)) ||
        !(c->pos = dev_alloc(c, (c->max_seqs + 1) * sizeof(int), err)))
        return -1;
    CK(cudaMallocHost((void **)&c->host_logits, (size_t)GEMV_M * c->cfg.vocab_size * sizeof(float)),
       "pinned logits buffer");
    return 0;
}

static g4k_attn attn_geometry(const g4_cuda *c, int seq, int l);
static int alloc_attention_scratch(g4_cuda *c, g4_err *err);

g4_cuda *g4_cuda_create(const g4_weights *w, g4_kv_dtype kv, int max_seqs, int max_context, g4_err *err) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        g4_errorf(err, "CUDA: no GPU found (use --device cpu)");
        return NULL;
    }
    for (int l = 0; l < w->cfg.n_layers; l++)
        if (w->cfg.layer[l].head_dim > G4K_MAX_HEAD_DIM) {
            g4_errorf(err, "CUDA: layer %d: head_dim %d is above the %d the GPU kernels take (use --device cpu)", l,
                      w->cfg.layer[l].head_dim, G4K_MAX_HEAD_DIM);
            return NULL;
        }
    g4_cuda *c = calloc(1, sizeof *c);
    c->cfg = w->cfg;
    c->kv_dtype = kv == G4_KV_F32 ? G4K_KV_F32 : kv == G4_KV_BF16 ? G4K_KV_BF16 : G4K_KV_FP8;
    c->max_seqs = max_seqs, c->max_context = max_context, c->graph_seq = -1, c->sample_graph_seq = -1;
    c->layers = calloc(c->cfg.n_layers, sizeof *c->layers);
    int rc = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) == cudaSuccess ? 0
             : g4_errorf(err, "CUDA: cannot create a stream");
    if (!rc) rc = uploader_init(&c->up, err);
    for (int l = 0; l < c->cfg.n_layers && !rc; l++) rc = upload_layer(c, w, l, err);
    if (!rc) {
        const g4_matrix *e = &w->embed;
        c->embed = (g4_dmatrix){.fp8 = 0, .rows = e->rows, .cols = e->cols, .tiled = tile_embedding(e)};
        if (!(c->embed.data = dev_alloc(c, 2ull * e->rows * e->cols, err)) ||
            upload_codes(c, (char *)c->embed.data, e, c->embed.tiled, err))
            rc = -1;
    }
    if (!rc && !(c->final_norm = upload_vec(c, w->final_norm, c->cfg.hidden, err))) rc = -1;
    if (!rc) rc = alloc_cache(c, err) || alloc_scratch(c, err) || alloc_attention_scratch(c, err);
    if (!rc && cudaStreamSynchronize(c->stream) != cudaSuccess) rc = g4_errorf(err, "CUDA: weight upload failed");
    uploader_free(&c->up);
    memset(&c->up, 0, sizeof c->up);
    if (rc) {
        g4_cuda_free(c);
        return NULL;
    }
    return c;
}

void g4_cuda_free(g4_cuda *c) {
    if (!c) return;
    if (c->graph) cudaGraphExecDestroy(c->graph);
    if (c->sample_graph) cudaGraphExecDestroy(c->sample_graph);
    uploader_free(&c->up);
    if (c->host_logits) cudaFreeHost(c->host_logits);
    g4k_gemm_release();
    g4k_gemm_w8a8_release();
    for (int i = 0; i < c->n_allocs; i++) cudaFree(c->allocs[i]);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c->allocs);
    free(c->k_cache);
    free(c->v_cache);
    free(c->layers);
    free(c);
}

/* ------------------------------------------------------------ the forward pass */

static g4k_attn attn_geometry(const g4_cuda *c, int seq, int l) {
    const g4_layer_geom *g = &c->cfg.layer[l];
    g4k_attn a = {.n_heads = c->cfg.n_heads, .n_kv_heads = g->n_kv_heads, .head_dim = g->head_dim,
                  .rope_pairs = g->rope_pairs, .rope_theta = g->rope_theta, .window = g->window,
                  .ring = ring_rows(c, l), .eps = c->cfg.rms_eps, .kv_dtype = c->kv_dtype, .k_scale = c->layers[l].k_scale,
                  .v_scale = c->layers[l].v_scale, .k_cache = c->k_cache[seq * c->cfg.n_layers + l],
                  .v_cache = c->v_cache[seq * c->cfg.n_layers + l]};
    return a;
}

/* The decode attention's scratch, sized for every layer kind; sizing also
 * prepares its kernels, which must happen before a graph capture. */
static int alloc_attention_scratch(g4_cuda *c, g4_err *err) {
    size_t bytes = 0;
    for (int l = 0; l < c->cfg.n_layers; l++) {
        const g4k_attn a = attn_geometry(c, 0, l);
        const size_t b = g4k_attention_decode_scratch(&a, GEMV_M, c->max_context);
        bytes = b > bytes ? b : bytes;
    }
    if (!(c->attn_parts = dev_alloc(c, bytes, err))) return -1;
    CK(cudaMemset(c->attn_parts, 0, bytes), "attention scratch"); /* its arrival tickets start at zero */
    return 0;
}

/* Prefill (more tokens than one GEMV pass takes) runs on tensor cores with
 * FP16 activations (g4k_gemm); G4_EXACT_PREFILL=1 keeps it on the fp32 GEMV
 * path instead, GEMV_M tokens per pass over the weights (slow, exact). */
static bool use_gemm(int n) {
    const char *exact = getenv("G4_EXACT_PREFILL"); /* read per call: tests switch it */
    return n > GEMV_M && !(exact && atoi(exact));
}

/* G4_PREFILL=w8a8: prefill GEMMs quantize the activations to FP8 per token
 * and 128 columns and run on cuBLASLt's block-scaled FP8 tensor cores (what
 * SGLang runs for this checkpoint; ~1-2 % relative error per GEMM), falling
 * back to g4k_gemm where cuBLASLt refuses the shape. */
static bool prefill_w8a8(void) {
    const char *mode = getenv("G4_PREFILL"); /* read per call: tests switch it */
    return mode && !strcmp(mode, "w8a8");
}

/* G4_PREFILL_QKV=separate: prefill q, k and v as one GEMM each instead of
 * one GEMM over the concatenated matrix (the same numerics per element; the
 * tests compare the two). */
static bool prefill_qkv_concat(const layer_dev *d, int n) {
    const char *mode = getenv("G4_PREFILL_QKV"); /* read per call: tests switch it */
    return d->qkv.data && use_gemm(n) && !prefill_w8a8() && !(mode && !strcmp(mode, "separate"));
}

/* y = x W^T for n tokens. */
static void gemv_tokens(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int n, cudaStream_t s) {
    if (use_gemm(n)) {
        if (prefill_w8a8() && g4k_gemm_w8a8_multi(w, y, n_mats, x, n, s) == 0) return;
        for (int i = 0; i < n_mats; i++) g4k_gemm(&w[i], y[i], x, n, s);
        return;
    }
    for (int t = 0; t < n; t += GEMV_M) {
        float *ys[3];
        for (int i = 0; i < n_mats; i++) ys[i] = y[i] + (size_t)t * w[i].rows;
        g4k_gemv(w, ys, n_mats, x + (size_t)t * w[0].cols, n - t < GEMV_M ? n - t : GEMV_M, s);
    }
}

static void geglu_tokens(const layer_dev *d, float *y, const float *x, int n, cudaStream_t s) {
    if (use_gemm(n)) {
        if (!(prefill_w8a8() && g4k_gemm_w8a8_geglu(&d->gate, &d->up, y, x, n, s) == 0))
            g4k_gemm_geglu(&d->gate, &d->up, y, x, n, s);
        return;
    }
    for (int t = 0; t < n; t += GEMV_M)
        g4k_gemv_geglu(&d->gate, &d->up, y + (size_t)t * d->gate.rows, x + (size_t)t * d->gate.cols,
                       n - t < GEMV_M ? n - t : GEMV_M, s);
}

/* The raw q, k and v of layer l for n tokens from c->x = rms(h; input_norm):
 * prefill as one GEMM over the concatenated matrix into c->attn (free until
 * attention; g4k_qkv_post reads the three column ranges in place), else one
 * GEMV/GEMM per matrix into c->q, c->k, c->v. k == v layers: v is k's output. */
static g4k_qkv_in project_qkv(g4_cuda *c, int l, int n) {
    const layer_dev *d = &c->layers[l];
    const bool k_eq_v = c->cfg.layer[l].k_eq_v;
    const int q_dim = d->q.rows, kv_dim = d->k.rows;
    if (prefill_qkv_concat(d, n)) {
        g4k_gemm(&d->qkv, c->attn, c->x, n, c->stream);
        const int ld = d->qkv.rows;
        return (g4k_qkv_in){c->attn, c->attn + q_dim, c->attn + (k_eq_v ? q_dim : q_dim + kv_dim), ld, ld, ld};
    }
    if (k_eq_v) {
        g4_dmatrix qk[2] = {d->q, d->k};
        float *ys[2] = {c->q, c->k};
        gemv_tokens(qk, ys, 2, c->x, n, c->stream);
        return (g4k_qkv_in){c->q, c->k, c->k, q_dim, kv_dim, kv_dim};
    }
    g4_dmatrix qkv[3] = {d->q, d->k, d->v};
    float *ys[3] = {c->q, c->k, c->v};
    gemv_tokens(qkv, ys, 3, c->x, n, c->stream);
    return (g4k_qkv_in){c->q, c->k, c->v, q_dim, kv_dim, kv_dim};
}

/* One decoder layer for n tokens; c->x holds rms(h; input_norm) on entry and
 * the next layer's normed input (or the final norm's output) on exit. */
static void layer_forward(g4_cuda *c, int seq, int l, const int *pos0, int n) {
    const g4_config *cfg = &c->cfg;
    const layer_dev *d = &c->layers[l];
    cudaStream_t s = c->stream;
    g4k_attn a = attn_geometry(c, seq, l);
    const g4k_qkv_in in = project_qkv(c, l, n);
    mark(c, ST_QKV);
    if (n <= GEMV_M) { /* decode: norms, RoPE, cache write and split-K attention in two launches */
        float *v = cfg->layer[l].k_eq_v ? c->k : c->v; /* what project_qkv left in `in` */
        g4k_attention_decode(&a, c->q, c->k, v, d->q_norm, d->k_norm, c->attn, c->attn_parts, pos0, n,
                             c->max_context, s);
    } else {
        g4k_qkv_post(&a, &in, c->q, d->q_norm, d->k_norm, pos0, n, s);
        mark(c, ST_QKV_POST);
        g4k_attention(&a, c->q, c->attn, pos0, n, c->max_context, s);
    }
    mark(c, ST_ATTN);
    /* o and down: split-K parts when one launch covers every token (decode) */
    const int splits = n <= GEMV_M ? SPLITS : 1;
    float *proj = c->proj;
    int parts = 1;
    if (splits > 1) parts = g4k_gemv_split(&d->o, &proj, 1, c->attn, n, splits, s);
    else gemv_tokens(&d->o, &proj, 1, c->attn, n, s);
    mark(c, ST_O);
    g4k_residual_norm(c->h, c->proj, parts, d->post_attn_norm, 1.0f, c->x, d->pre_ffn_norm, n, cfg->hidden,
                      cfg->rms_eps, s);
    mark(c, ST_RESID);
    geglu_tokens(d, c->ffn, c->x, n, s);
    mark(c, ST_GEGLU);
    parts = 1;
    if (splits > 1) parts = g4k_gemv_split(&d->down, &proj, 1, c->ffn, n, splits, s);
    else gemv_tokens(&d->down, &proj, 1, c->ffn, n, s);
    mark(c, ST_DOWN);
    const float *next = l + 1 < cfg->n_layers ? c->layers[l + 1].input_norm : c->final_norm;
    g4k_residual_norm(c->h, c->proj, parts, d->post_ffn_norm, d->layer_scalar, c->x, next, n, cfg->hidden,
                      cfg->rms_eps, s);
    mark(c, ST_RESID);
}

/* Embedding through the final norm for n <= CHUNK tokens already in c->tokens. */
static void stack_forward(g4_cuda *c, int seq, const int *pos0, int n) {
    const g4_config *cfg = &c->cfg;
    g4k_embed(c->h, &c->embed, c->tokens, n, g4_round_bf16(sqrtf((float)cfg->hidden)), c->stream);
    mark(c, ST_EMBED);
    g4k_rmsnorm(c->x, c->h, c->layers[0].input_norm, n, cfg->hidden, cfg->rms_eps, c->stream);
    mark(c, ST_NORM);
    for (int l = 0; l < cfg->n_layers; l++) layer_forward(c, seq, l, pos0, n);
}

static int logits_to_host(g4_cuda *c, int first_row, int n_rows, float *out, g4_err *err) {
    const g4_config *cfg = &c->cfg;
    for (int r = 0; r < n_rows; r += GEMV_M) {
        const int m = n_rows - r < GEMV_M ? n_rows - r : GEMV_M;
        g4k_lm_head(c->logits, c->x + (size_t)(first_row + r) * cfg->hidden, &c->embed, m, cfg->final_softcap,
                    c->stream);
        const size_t bytes = sizeof(float) * m * cfg->vocab_size;
        CK(cudaMemcpyAsync(c->host_logits, c->logits, bytes, cudaMemcpyDeviceToHost, c->stream), "copy logits");
        CK(cudaStreamSynchronize(c->stream), "copy logits");
        memcpy(out + (size_t)r * cfg->vocab_size, c->host_logits, bytes);
    }
    return 0;
}

int g4_cuda_forward(g4_cuda *c, int seq, int pos0, const int32_t *tokens, int n, bool all_logits, float *logits,
                    g4_err *err) {
    int *scratch_pos = c->pos + c->max_seqs;
    for (int done = 0; done < n; done += CHUNK) {
        const int m = n - done < CHUNK ? n - done : CHUNK, p = pos0 + done;
        CK(cudaMemcpyAsync(c->tokens, tokens + done, sizeof(int32_t) * m, cudaMemcpyHostToDevice, c->stream), "tokens");
        CK(cudaMemcpyAsync(scratch_pos, &p, sizeof p, cudaMemcpyHostToDevice, c->stream), "position");
        stack_forward(c, seq, scratch_pos, m);
        if (all_logits && logits_to_host(c, 0, m, logits + (size_t)done * c->cfg.vocab_size, err)) return -1;
        if (!all_logits && done + m == n && logits_to_host(c, m - 1, 1, logits, err)) return -1;
        /* the host values above must not change before the copies ran */
        CK(cudaStreamSynchronize(c->stream), "forward");
    }
    CK(cudaGetLastError(), "kernel launch");
    return 0;
}

/* ------------------------------------------------------------ decode graphs (greedy, sampled) */

/* One decode step at *pos: the forward pass, the head, the choice of the next
 * token (argmax, or the GPU sampler with c->sample_params and c->rng), and the
 * advance of *pos. `host` is the sampler's parameters as the launcher checks
 * them (NULL: greedy); the step reads the device copy, so a captured graph
 * serves any parameters the GPU sampler takes. */
static int decode_step(g4_cuda *c, int seq, const g4k_sampling *host) {
    const g4_config *cfg = &c->cfg;
    int *pos = c->pos + seq;
    stack_forward(c, seq, pos, 1);
    g4k_lm_head(c->logits, c->x, &c->embed, 1, cfg->final_softcap, c->stream);
    mark(c, ST_HEAD);
    int rc = 0;
    if (host)
        rc = g4k_sample(c->tokens, c->logits, 1, cfg->vocab_size, host, c->sample_params, c->rng, c->sample_scratch,
                        cfg->eoi_token_id, cfg->eoa_token_id, c->stream);
    else
        g4k_argmax(c->tokens, c->logits, 1, cfg->vocab_size, cfg->eoi_token_id, cfg->eoa_token_id, c->stream);
    g4k_record_advance(pos, c->tokens, c->hist, c->stream);
    mark(c, ST_SAMPLE);
    return rc;
}

/* The step of sequence seq as a graph (greedy, or sampled when host != NULL),
 * captured on first use and kept while the sequence stays the same. */
static int capture(g4_cuda *c, int seq, const g4k_sampling *host, g4_err *err) {
    cudaGraphExec_t *exec = host ? &c->sample_graph : &c->graph;
    int *exec_seq = host ? &c->sample_graph_seq : &c->graph_seq;
    if (*exec && *exec_seq == seq) return 0;
    if (*exec) cudaGraphExecDestroy(*exec), *exec = NULL;
    cudaGraph_t graph;
    CK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal), "begin capture");
    const int rc = decode_step(c, seq, host);
    CK(cudaStreamEndCapture(c->stream, &graph), "end capture");
    if (rc) {
        cudaGraphDestroy(graph);
        return g4_errorf(err, "the GPU sampler cannot take these parameters");
    }
    cudaError_t e = cudaGraphInstantiate(exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(err, e, "instantiate graph");
    *exec_seq = seq;
    return 0;
}

#ifdef G4_TRACE
#include <stdio.h>

/* TRACE=1 builds: G4_TRACE_OUT=FILE records the block timeline (trace.cuh) of
 * three decode steps in the middle of the first replay of 16 or more. Step i
 * of n: starts before step n / 2, writes the file before step n / 2 + 3. */
static void trace_point(g4_cuda *c, int i, int n) {
    static int state; /* 0 idle, 1 recording, 2 done */
    const char *path = getenv("G4_TRACE_OUT");
    if (!path || n < 16 || state == 2) return;
    if (state == 0 && i == n / 2) {
        cudaStreamSynchronize(c->stream);
        state = g4k_trace_begin() ? 2 : 1;
        if (state == 2) fprintf(stderr, "trace: could not start\n");
    } else if (state == 1 && i == n / 2 + 3) {
        cudaStreamSynchronize(c->stream);
        state = 2;
        if (g4k_trace_dump(path)) fprintf(stderr, "trace: could not write %s\n", path);
        else fprintf(stderr, "trace: 3 decode steps written to %s\n", path);
    }
}
#endif

/* Replays `exec` n times from `first` at pos0 and copies the n tokens out. */
static int replay(g4_cuda *c, cudaGraphExec_t exec, int seq, int pos0, int32_t first, int n, int32_t *out,
                  float *step_ms, g4_err *err) {
    CK(cudaMemcpyAsync(c->tokens, &first, sizeof first, cudaMemcpyHostToDevice, c->stream), "first token");
    CK(cudaMemcpyAsync(c->pos + seq, &pos0, sizeof pos0, cudaMemcpyHostToDevice, c->stream), "position");
    cudaEvent_t *ev = malloc(sizeof(cudaEvent_t) * (n + 1));
    for (int i = 0; i <= n; i++) cudaEventCreate(&ev[i]);
    cudaEventRecord(ev[0], c->stream);
    for (int i = 0; i < n; i++) {
#ifdef G4_TRACE
        trace_point(c, i, n);
#endif
        cudaGraphLaunch(exec, c->stream);
        cudaEventRecord(ev[i + 1], c->stream);
    }
    cudaError_t e = cudaStreamSynchronize(c->stream);
    for (int i = 0; step_ms && i < n; i++) cudaEventElapsedTime(&step_ms[i], ev[i], ev[i + 1]);
    for (int i = 0; i <= n; i++) cudaEventDestroy(ev[i]);
    free(ev);
    if (e != cudaSuccess) return cuda_fail(err, e, "decode");
    CK(cudaMemcpy(out, c->hist + pos0 + 1, sizeof(int32_t) * n, cudaMemcpyDeviceToHost), "tokens out");
    return 0;
}

int g4_cuda_decode_greedy(g4_cuda *c, int seq, int pos0, int32_t first, int n, int32_t *out, float *step_ms,
                          g4_err *err) {
    if (pos0 + n > c->max_context) return g4_errorf(err, "decode would pass the context limit %d", c->max_context);
    if (capture(c, seq, NULL, err)) return -1;
    return replay(c, c->graph, seq, pos0, first, n, out, step_ms, err);
}

int g4_cuda_decode(g4_cuda *c, int seq, int pos0, int32_t first, int n, const g4_sampling *p, int32_t *out,
                   float *step_ms, g4_err *err) {
    if (p->temperature <= 0.0f) return g4_cuda_decode_greedy(c, seq, pos0, first, n, out, step_ms, err);
    const g4k_sampling host = {p->temperature, p->top_k, p->top_p, p->min_p};
    if (!g4k_sample_supported(&host)) return 1;
    if (pos0 + n > c->max_context) return g4_errorf(err, "decode would pass the context limit %d", c->max_context);
    if (!c->sample_params && (!(c->sample_params = dev_alloc(c, sizeof(g4k_sampling), err)) ||
                              !(c->rng = dev_alloc(c, sizeof(uint64_t), err)) ||
                              !(c->sample_scratch = dev_alloc(c, g4k_sample_scratch_bytes(1, c->cfg.vocab_size), err))))
        return -1;
    if (capture(c, seq, &host, err)) return -1;
    /* the parameters and a fresh stream from the seed, as g4_sampler_create starts one
     * (host and state outlive the copies: replay synchronizes) */
    const uint64_t state = g4_sampler_rng_init(p->seed);
    CK(cudaMemcpyAsync(c->sample_params, &host, sizeof host, cudaMemcpyHostToDevice, c->stream), "sampling parameters");
    CK(cudaMemcpyAsync(c->rng, &state, sizeof state, cudaMemcpyHostToDevice, c->stream), "random state");
    return replay(c, c->sample_graph, seq, pos0, first, n, out, step_ms, err);
}

static int profile_begin(g4_cuda *c, g4_err *err) {
    profiler *p = &c->prof;
    for (int i = 0; i <= MAX_MARKS; i++) CK(cudaEventCreate(&p->ev[i]), "event");
    p->on = true, p->n = 0;
    cudaEventRecord(p->ev[0], c->stream);
    return 0;
}

static int profile_end(g4_cuda *c, double *ms, const char **names, g4_err *err) {
    profiler *p = &c->prof;
    p->on = false;
    CK(cudaStreamSynchronize(c->stream), "profiled step");
    for (int s = 0; s < ST_COUNT; s++) ms[s] = 0, names[s] = stage_names[s];
    for (int i = 0; i < p->n; i++) {
        float t;
        cudaEventElapsedTime(&t, p->ev[i], p->ev[i + 1]);
        ms[p->stage[i]] += t;
    }
    for (int i = 0; i <= MAX_MARKS; i++) cudaEventDestroy(p->ev[i]);
    return ST_COUNT;
}

int g4_cuda_profile_step(g4_cuda *c, int seq, int pos0, int32_t token, double *ms, const char **names, g4_err *err) {
    CK(cudaMemcpyAsync(c->tokens, &token, sizeof token, cudaMemcpyHostToDevice, c->stream), "token");
    CK(cudaMemcpyAsync(c->pos + seq, &pos0, sizeof pos0, cudaMemcpyHostToDevice, c->stream), "position");
    if (profile_begin(c, err)) return -1;
    decode_step(c, seq, NULL);
    return profile_end(c, ms, names, err);
}

int g4_cuda_profile_prefill(g4_cuda *c, int seq, int pos0, const int32_t *tokens, int n, float *logits, double *ms,
                            const char **names, g4_err *err) {
    if (profile_begin(c, err)) return -1;
    const int rc = g4_cuda_forward(c, seq, pos0, tokens, n, false, logits, err);
    mark(c, ST_HEAD);
    const int stages = profile_end(c, ms, names, err);
    return rc ? -1 : stages;
}
