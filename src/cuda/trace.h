/* Host side of the block timeline (trace.cuh); only in TRACE=1 builds. */
#ifndef G4_CUDA_TRACE_H
#define G4_CUDA_TRACE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kinds of traced kernels (the `what` of a record tells launches apart: the
 * weights of a GEMV, the post-norm weights of a residual step, the KV cache of
 * an attention layer). */
enum { G4K_TR_GEMV = 1, G4K_TR_GEGLU, G4K_TR_HEAD, G4K_TR_RESID, G4K_TR_ATTN, G4K_TR_MERGE, G4K_TR_ARGMAX,
       G4K_TR_EMBED, G4K_TR_NORM, G4K_TR_ADVANCE };

typedef struct {
    uint32_t kind, block;
    uint64_t what;
    uint64_t start, waited, end; /* ns; waited = 0 where the kernel marks no wait */
} g4k_trace_rec;

/* Called once per translation unit at start-up (trace.cuh). */
int g4k_trace_register(int (*bind)(g4k_trace_rec *buf, unsigned *count, int per_sm, int sms));

/* Starts recording (clears what an earlier trace left); 0 on success. Call
 * with no kernel running: it sets device symbols. */
int g4k_trace_begin(void);

/* Stops recording and writes one line per block to path:
 * "sm kind block what start waited end" (ns relative to the first start). */
int g4k_trace_dump(const char *path);

#ifdef __cplusplus
}
#endif

#endif
