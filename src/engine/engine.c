/* Engine: model + KV cache + sequence slots on a backend (see engine.h).
 * The CPU reference backend, or the CUDA one when built with nvcc
 * (G4_HAVE_CUDA) and asked for. */
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>

#include "cpu/forward.h"
#include "model/weights.h"
#include "engine/sampler.h"
#include "util/progress.h"
#if G4_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

struct g4_engine {
    g4_engine_opts opts;
    g4_weights *weights;
    g4_kv_cache *kv;  /* CPU backend */
#if G4_HAVE_CUDA
    g4_cuda *cuda;    /* CUDA backend */
#endif
    int *seq_len;     /* [max_seqs]; -1 = free slot */
};

void g4_engine_default_opts(g4_engine_opts *o) {
    memset(o, 0, sizeof *o);
    o->device = G4_DEVICE_CPU;
    o->kv_dtype = G4_KV_FP8;
    o->max_seqs = 1;
    o->max_context = 4096;
}

static g4_kv_cache *make_cache(const g4_weights *w, const g4_engine_opts *o, g4_err *err) {
    int n = w->cfg.n_layers;
    float *ks = malloc(sizeof(float) * n), *vs = malloc(sizeof(float) * n);
    for (int l = 0; l < n; l++) ks[l] = w->layers[l].k_scale, vs[l] = w->layers[l].v_scale;
    g4_kv_cache *kv = g4_kv_create(&w->cfg, o->kv_dtype, o->max_seqs, o->max_context, ks, vs, err);
    free(ks);
    free(vs);
    return kv;
}

/* The backend's own state: a KV cache in host memory, or the GPU's. */
static int make_backend(g4_engine *e, g4_err *err) {
    if (e->opts.device == G4_DEVICE_CPU) return (e->kv = make_cache(e->weights, &e->opts, err)) ? 0 : -1;
#if G4_HAVE_CUDA
    e->cuda = g4_cuda_create(e->weights, e->opts.kv_dtype, e->opts.max_seqs, e->opts.max_context, err);
    return e->cuda ? 0 : -1;
#else
    return g4_errorf(err, "this build has no CUDA backend (built without nvcc); use --device cpu");
#endif
}

g4_engine *g4_engine_create(const char *model_dir, const g4_engine_opts *opts, g4_err *err) {
    if (opts->max_seqs <= 0 || opts->max_context <= 0) {
        g4_errorf(err, "max_seqs and max_context must be positive");
        return NULL;
    }
    g4_engine *e = calloc(1, sizeof *e);
    e->opts = *opts;
    g4_load_opts lo = {.quantize_bf16 = opts->quantize_bf16, .calib = G4_CALIB_MAX};
    if (!(e->weights = g4_weights_load(model_dir, &lo, err))) goto fail;
    if (g4_config_is_assistant(&e->weights->cfg)) {
        g4_errorf(err, "%s is an assistant (drafter) model; it cannot run on its own", model_dir);
        goto fail;
    }
    if (make_backend(e, err)) goto fail;
    e->seq_len = malloc(sizeof(int) * opts->max_seqs);
    for (int s = 0; s < opts->max_seqs; s++) e->seq_len[s] = -1;
    return e;
fail:
    g4_engine_free(e);
    return NULL;
}

void g4_engine_free(g4_engine *e) {
    if (!e) return;
    g4_kv_free(e->kv);
#if G4_HAVE_CUDA
    g4_cuda_free(e->cuda);
#endif
    g4_weights_free(e->weights);
    free(e->seq_len);
    free(e);
}

const g4_config *g4_engine_config(const g4_engine *e) { return &e->weights->cfg; }

int g4_engine_seq_alloc(g4_engine *e, g4_err *err) {
    for (int s = 0; s < e->opts.max_seqs; s++) {
        if (e->seq_len[s] < 0) {
            e->seq_len[s] = 0;
            return s;
        }
    }
    return g4_errorf(err, "all %d sequence slots are in use", e->opts.max_seqs);
}

void g4_engine_seq_free(g4_engine *e, int seq) {
    if (seq >= 0 && seq < e->opts.max_seqs) e->seq_len[seq] = -1;
}

int g4_engine_seq_len(const g4_engine *e, int seq) { return e->seq_len[seq]; }

void g4_engine_truncate(g4_engine *e, int seq, int len) {
    if (len >= 0 && len < e->seq_len[seq]) e->seq_len[seq] = len;
}

static int check_items(const g4_engine *e, const g4_batch_item *items, int n, g4_err *err) {
    for (int i = 0; i < n; i++) {
        const g4_batch_item *it = &items[i];
        if (it->seq < 0 || it->seq >= e->opts.max_seqs || e->seq_len[it->seq] < 0)
            return g4_errorf(err, "batch item %d: sequence %d is not allocated", i, it->seq);
        if (it->n_tokens <= 0) return g4_errorf(err, "batch item %d: no tokens", i);
        if (e->seq_len[it->seq] + it->n_tokens > e->opts.max_context)
            return g4_errorf(err, "batch item %d: %d + %d tokens exceed the context limit of %d", i,
                             e->seq_len[it->seq], it->n_tokens, e->opts.max_context);
        for (int j = 0; j < i; j++)
            if (items[j].seq == it->seq) return g4_errorf(err, "batch items %d and %d name the same sequence", j, i);
        for (int t = 0; t < it->n_tokens; t++) /* every backend indexes the embedding with these */
            if (it->tokens[t] < 0 || it->tokens[t] >= e->weights->cfg.vocab_size)
                return g4_errorf(err, "batch item %d: token id %d is outside the vocabulary (0..%d)", i, it->tokens[t],
                                 e->weights->cfg.vocab_size - 1);
    }
    return 0;
}

static int backend_forward(g4_engine *e, const g4_batch_item *it, float *out, g4_err *err) {
#if G4_HAVE_CUDA
    if (e->cuda)
        return g4_cuda_forward(e->cuda, it->seq, e->seq_len[it->seq], it->tokens, it->n_tokens, it->all_logits, out,
                               err);
#endif
    return cpu_forward(e->weights, e->kv, it->seq, e->seq_len[it->seq], it->tokens, it->n_tokens, it->all_logits, out,
                       err);
}

int g4_engine_forward(g4_engine *e, const g4_batch_item *items, int n_items, float *logits, g4_err *err) {
    if (check_items(e, items, n_items, err)) return -1;
    const size_t vocab = (size_t)e->weights->cfg.vocab_size;
    float *out = logits;
    for (int i = 0; i < n_items; i++) {
        const g4_batch_item *it = &items[i];
        if (backend_forward(e, it, out, err)) return g4_err_wrap(err, "sequence %d", it->seq);
        out += vocab * (it->all_logits ? it->n_tokens : 1);
    }
    for (int i = 0; i < n_items; i++) e->seq_len[items[i].seq] += items[i].n_tokens;
    return 0;
}

int g4_engine_decode(g4_engine *e, int seq, int32_t first, int n, const g4_sampling *params, int32_t *out,
                     float *step_ms, g4_err *err) {
    if (seq < 0 || seq >= e->opts.max_seqs || e->seq_len[seq] < 0)
        return g4_errorf(err, "sequence %d is not allocated", seq);
    if (first < 0 || first >= e->weights->cfg.vocab_size)
        return g4_errorf(err, "token id %d is outside the vocabulary (0..%d)", first, e->weights->cfg.vocab_size - 1);
    if (e->seq_len[seq] + n > e->opts.max_context)
        return g4_errorf(err, "%d + %d tokens exceed the context limit of %d", e->seq_len[seq], n, e->opts.max_context);
#if G4_HAVE_CUDA
    if (e->cuda) {
        const int rc = g4_cuda_decode(e->cuda, seq, e->seq_len[seq], first, n, params, out, step_ms, err);
        if (rc < 0) return -1;
        if (rc == 0) {
            e->seq_len[seq] += n;
            return 0;
        }
        /* rc == 1: the GPU sampler cannot take these parameters; sample the GPU's logits here */
    }
#endif
    const g4_config *c = &e->weights->cfg;
    g4_sampler *s = g4_sampler_create(params, c->vocab_size, (int[]){c->eoi_token_id, c->eoa_token_id}, 2);
    float *logits = malloc(sizeof(float) * c->vocab_size);
    int32_t tok = first;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        double t0 = g4_now();
        g4_batch_item it = {seq, &tok, 1, false};
        if (!(rc = g4_engine_forward(e, &it, 1, logits, err))) {
            tok = out[i] = g4_sample(s, logits);
            if (step_ms) step_ms[i] = (float)((g4_now() - t0) * 1e3);
        }
    }
    free(logits);
    g4_sampler_free(s);
    return rc;
}

int g4_engine_decode_greedy(g4_engine *e, int seq, int32_t first, int n, int32_t *out, float *step_ms, g4_err *err) {
    g4_sampling greedy;
    g4_sampling_defaults(&greedy);
    greedy.temperature = 0.0f;
    return g4_engine_decode(e, seq, first, n, &greedy, out, step_ms, err);
}

const g4_weights *g4_engine_weights(const g4_engine *e) { return e->weights; }

int g4_engine_profile_step(g4_engine *e, int seq, int32_t token, double *ms, const char **names, g4_err *err) {
#if G4_HAVE_CUDA
    if (e->cuda) return g4_cuda_profile_step(e->cuda, seq, e->seq_len[seq], token, ms, names, err);
#endif
    return g4_errorf(err, "stage profiling needs the CUDA backend");
}

int g4_engine_profile_prefill(g4_engine *e, int seq, const int32_t *tokens, int n, double *ms, const char **names,
                              g4_err *err) {
#if G4_HAVE_CUDA
    if (e->cuda) {
        if (e->seq_len[seq] + n > e->opts.max_context)
            return g4_errorf(err, "%d + %d tokens exceed the context limit of %d", e->seq_len[seq], n, e->opts.max_context);
        float *logits = malloc(sizeof(float) * e->weights->cfg.vocab_size);
        const int stages = g4_cuda_profile_prefill(e->cuda, seq, e->seq_len[seq], tokens, n, logits, ms, names, err);
        free(logits);
        if (stages > 0) e->seq_len[seq] += n;
        return stages;
    }
#endif
    return g4_errorf(err, "stage profiling needs the CUDA backend");
}
