/* Choosing the next token from a row of logits: greedy, or temperature then
 * top-k, top-p and min-p, from a seeded per-sequence random stream. Ids the
 * model must never emit (<image|>, <audio|>: their embedding rows were
 * overwritten, model.md §3.4) are masked first. */
#ifndef G4_ENGINE_SAMPLER_H
#define G4_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    float temperature;   /* <= 0 means greedy */
    int top_k;           /* <= 0: no limit */
    float top_p;         /* >= 1: no limit */
    float min_p;         /* <= 0: no limit */
    uint64_t seed;
} g4_sampling;

/* Gemma's defaults (generation_config.json): temperature 1.0, top_p 0.95, top_k 64. */
void g4_sampling_defaults(g4_sampling *s);

typedef struct {
    g4_sampling params;
    uint64_t rng;                /* xorshift state */
    int suppress[4];
    int n_suppress;
    /* scratch for the candidate set */
    int32_t *ids;
    float *probs;
    int vocab;
} g4_sampler;

/* The xorshift64* state a sampler starts from for a seed (the GPU sampler starts the same way). */
uint64_t g4_sampler_rng_init(uint64_t seed);

g4_sampler *g4_sampler_create(const g4_sampling *params, int vocab, const int *suppress, int n_suppress);
void g4_sampler_free(g4_sampler *s);

/* Picks a token from logits[vocab] (which it may modify). */
int32_t g4_sample(g4_sampler *s, float *logits);

/* The greedy choice: the first maximum, suppressed ids excluded. */
int32_t g4_argmax(const float *logits, int vocab, const int *suppress, int n_suppress);

#endif
