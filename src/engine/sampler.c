/* Sampler (see sampler.h). */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void g4_sampling_defaults(g4_sampling *s) {
    s->temperature = 1.0f;
    s->top_k = 64;
    s->top_p = 0.95f;
    s->min_p = 0.0f;
    s->seed = 0;
}

uint64_t g4_sampler_rng_init(uint64_t seed) { return seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull; }

g4_sampler *g4_sampler_create(const g4_sampling *params, int vocab, const int *suppress, int n_suppress) {
    g4_sampler *s = calloc(1, sizeof *s);
    s->params = *params;
    s->rng = g4_sampler_rng_init(params->seed);
    for (int i = 0; i < n_suppress && i < 4; i++)
        if (suppress[i] >= 0 && suppress[i] < vocab) s->suppress[s->n_suppress++] = suppress[i];
    s->vocab = vocab;
    s->ids = malloc(sizeof(int32_t) * vocab);
    s->probs = malloc(sizeof(float) * vocab);
    return s;
}

void g4_sampler_free(g4_sampler *s) {
    if (!s) return;
    free(s->ids);
    free(s->probs);
    free(s);
}

static bool suppressed(const int *ids, int n, int id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

int32_t g4_argmax(const float *logits, int vocab, const int *suppress, int n_suppress) {
    int32_t best = -1;
    for (int i = 0; i < vocab; i++)
        if ((best < 0 || logits[i] > logits[best]) && !suppressed(suppress, n_suppress, i)) best = i;
    return best;
}

static double next_uniform(g4_sampler *s) { /* xorshift64*, 53 bits */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static const float *sort_logits; /* qsort has no context argument */
static int by_logit_desc(const void *a, const void *b) {
    float x = sort_logits[*(const int32_t *)a], y = sort_logits[*(const int32_t *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* Keeps the k largest logits in s->ids (descending); returns how many. */
static int candidates(g4_sampler *s, const float *logits) {
    int n = 0;
    for (int i = 0; i < s->vocab; i++)
        if (!suppressed(s->suppress, s->n_suppress, i) && !isnan(logits[i])) s->ids[n++] = i;
    sort_logits = logits;
    qsort(s->ids, n, sizeof *s->ids, by_logit_desc);
    int k = s->params.top_k;
    return k > 0 && k < n ? k : n;
}

int32_t g4_sample(g4_sampler *s, float *logits) {
    const g4_sampling *p = &s->params;
    if (p->temperature <= 0.0f) return g4_argmax(logits, s->vocab, s->suppress, s->n_suppress);
    int n = candidates(s, logits);
    if (n == 0) return g4_argmax(logits, s->vocab, NULL, 0);
    double sum = 0.0;
    const float top = logits[s->ids[0]] / p->temperature;
    for (int i = 0; i < n; i++) sum += s->probs[i] = expf(logits[s->ids[i]] / p->temperature - top);
    int keep = n;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        s->probs[i] /= (float)sum;
        if (p->top_p < 1.0f && cum >= p->top_p && keep == n) keep = i; /* smallest prefix reaching top_p */
        cum += s->probs[i];
        if (p->min_p > 0.0f && s->probs[i] < p->min_p * s->probs[0] && i < keep) keep = i;
    }
    if (keep < 1) keep = 1;
    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass += s->probs[i];
    double u = next_uniform(s) * mass;
    for (int i = 0; i < keep; i++) {
        u -= s->probs[i];
        if (u <= 0.0) return s->ids[i];
    }
    return s->ids[keep - 1];
}
