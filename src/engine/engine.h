/* The engine API every front end uses (CLI, scheduler, server): a model on a
 * backend, a fixed number of sequence slots with their KV cache, and one
 * forward over a batch of sequences of different lengths.
 *
 * A batch item appends n tokens to one sequence: a whole prompt (prefill),
 * one token (decode), or several drafted tokens to verify at once (their
 * logits all come back; g4_engine_truncate drops the rejected ones).
 * Not thread-safe: one thread (the scheduler) owns an engine. */
#ifndef G4_ENGINE_ENGINE_H
#define G4_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "model/config.h"
#include "model/weights.h"
#include "util/err.h"

typedef enum { G4_DEVICE_CPU, G4_DEVICE_CUDA } g4_device;

typedef struct {
    g4_device device;
    g4_kv_dtype kv_dtype;    /* FP8 is the product default; F32 is the exact reference */
    int max_seqs;            /* sequence slots */
    int max_context;         /* tokens per sequence */
    bool quantize_bf16;      /* load a BF16 checkpoint as fp8_pb_wo */
} g4_engine_opts;

void g4_engine_default_opts(g4_engine_opts *o);

typedef struct g4_engine g4_engine;

g4_engine *g4_engine_create(const char *model_dir, const g4_engine_opts *opts, g4_err *err);
void g4_engine_free(g4_engine *e);
const g4_config *g4_engine_config(const g4_engine *e);

/* Sequence slots. */
int g4_engine_seq_alloc(g4_engine *e, g4_err *err); /* a free slot id, or -1 */
void g4_engine_seq_free(g4_engine *e, int seq);
int g4_engine_seq_len(const g4_engine *e, int seq);
void g4_engine_truncate(g4_engine *e, int seq, int len); /* forget positions >= len */

typedef struct {
    int seq;
    const int32_t *tokens;
    int n_tokens;
    bool all_logits;         /* logits for every token, else for the last only */
} g4_batch_item;

/* Runs the batch; logits rows follow the items in order, [vocab] floats each:
 * n_tokens rows for all_logits items, one otherwise. On error nothing is
 * appended to any sequence. */
int g4_engine_forward(g4_engine *e, const g4_batch_item *items, int n_items, float *logits, g4_err *err);

/* Decode of n steps: feeds `first`, then each chosen token, chosen as
 * g4_sample chooses with `params` (greedy when temperature <= 0; the random
 * stream starts from params->seed at each call; <image|> and <audio|> never
 * chosen). out[i] is the i-th generated token; step_ms[i] (may be NULL) the
 * time of step i. The sequence grows by n. On the GPU each step is one CUDA
 * graph replay, the token chosen on the GPU (greedy, or sampled with
 * 1 <= top_k <= 64); other parameters sample the GPU's logits on the host,
 * one step at a time. */
int g4_engine_decode(g4_engine *e, int seq, int32_t first, int n, const g4_sampling *params, int32_t *out,
                     float *step_ms, g4_err *err);

/* g4_engine_decode with temperature 0. */
int g4_engine_decode_greedy(g4_engine *e, int seq, int32_t first, int n, int32_t *out, float *step_ms, g4_err *err);

/* GPU time of each stage of one decode step (CUDA only): fills ms[i] and
 * names[i] (at most 16 stages), returns the number of stages or -1. */
int g4_engine_profile_step(g4_engine *e, int seq, int32_t token, double *ms, const char **names, g4_err *err);
/* The same for the prefill of n tokens appended to seq (CUDA only). */
int g4_engine_profile_prefill(g4_engine *e, int seq, const int32_t *tokens, int n, double *ms, const char **names,
                              g4_err *err);

/* The loaded weights (for sizes in reports). */
const g4_weights *g4_engine_weights(const g4_engine *e);

#endif
