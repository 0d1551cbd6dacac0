/* The CUDA backend behind the engine API: weights uploaded once (FP8 stays
 * FP8), a KV cache per sequence slot on the GPU, the forward pass as a
 * sequence of kernel launches (src/cuda/kernels.h), and decode loops (greedy,
 * or sampled on the GPU) whose step is one CUDA graph. Built only when nvcc is
 * present. */
#ifndef G4_CUDA_BACKEND_H
#define G4_CUDA_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv_cache.h"
#include "engine/sampler.h"
#include "model/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4_cuda g4_cuda;

g4_cuda *g4_cuda_create(const g4_weights *w, g4_kv_dtype kv, int max_seqs, int max_context, g4_err *err);
void g4_cuda_free(g4_cuda *c);

/* Appends n tokens of sequence seq at positions pos0.. and copies logits to
 * the host: every token's (all_logits) or the last one's. */
int g4_cuda_forward(g4_cuda *c, int seq, int pos0, const int32_t *tokens, int n, bool all_logits, float *logits,
                    g4_err *err);

/* Greedy decode on the GPU: feeds `first` at pos0, then each argmax, n steps,
 * each step one CUDA graph replay. out[i]: the i-th generated token;
 * step_ms[i] (may be NULL): GPU time of step i, from events between replays. */
int g4_cuda_decode_greedy(g4_cuda *c, int seq, int pos0, int32_t first, int n, int32_t *out, float *step_ms,
                          g4_err *err);

/* Decode with sampling: like g4_cuda_decode_greedy, each step's token chosen
 * on the GPU (g4k_sample) by g4_sample's rules with parameters p and a random
 * stream started from p->seed as g4_sampler_create starts it; greedy
 * (temperature <= 0) is g4_cuda_decode_greedy. Returns 1, having done nothing,
 * when the GPU sampler cannot take p (temperature > 0 with top_k <= 0 or
 * > G4K_SAMPLE_TOPK): the caller then samples on the host. */
int g4_cuda_decode(g4_cuda *c, int seq, int pos0, int32_t first, int n, const g4_sampling *p, int32_t *out,
                   float *step_ms, g4_err *err);

/* Times one decode step run without the graph, an event after each stage:
 * fills ms[i] / names[i] per stage (at most 16) and returns how many. The
 * sequence is not advanced (the step's KV row is rewritten by the next one). */
int g4_cuda_profile_step(g4_cuda *c, int seq, int pos0, int32_t token, double *ms, const char **names, g4_err *err);
/* The same for the prefill of n tokens at pos0 (eager, chunk by chunk; logits of the last token).
 * Its last stage, the lm head, also holds the logits' copy to the host and the host's wait for it. */
int g4_cuda_profile_prefill(g4_cuda *c, int seq, int pos0, const int32_t *tokens, int n, float *logits, double *ms,
                            const char **names, g4_err *err);

/* Read bandwidth of this GPU in GB/s (a streaming read of `bytes`, median of reps). */
double g4_cuda_read_bandwidth(uint64_t bytes, int reps, g4_err *err);

/* Name of the GPU, for reports. */
const char *g4_cuda_device_name(void);

#ifdef __cplusplus
}
#endif

#endif
