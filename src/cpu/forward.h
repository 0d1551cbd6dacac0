/* The Gemma 4 text forward pass on the CPU, in fp32: the readable reference
 * (model.md §2) that every faster path is tested against. */
#ifndef G4_CPU_FORWARD_H
#define G4_CPU_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/kv_cache.h"
#include "model/weights.h"

/* Runs n tokens of sequence `seq` at positions pos0 .. pos0+n-1, appending
 * their K/V to the cache (which already holds positions < pos0). Writes
 * logits (after the softcap) for every token when all_logits, else for the
 * last one only: [all_logits ? n : 1][vocab]. */
int cpu_forward(const g4_weights *w, g4_kv_cache *kv, int seq, int pos0, const int32_t *tokens, int n,
                bool all_logits, float *logits, g4_err *err);

#endif
