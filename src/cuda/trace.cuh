/* Block timeline of the decode step, for finding where SMs idle between
 * kernels (a diagnostic build only: make BUILD=.tracebuild TRACE=1; in other
 * builds the macros below are empty). A traced kernel opens a scope at its
 * start (G4K_TRACE) and marks the return of its PDL wait (G4K_TRACE_WAITED);
 * when thread 0 leaves the kernel, by any return, it records the block's SM,
 * start, wait and end (%globaltimer, ns) into its SM's part of a buffer. The
 * end is thread 0's exit: other warps of the block may still run (a GEMV
 * with one warp per tile has no final barrier).
 * g4k_trace_begin / g4k_trace_dump (trace.h) switch recording on and write
 * the records out; cuda_forward.c traces decode steps under G4_TRACE_OUT. */
#ifndef G4_CUDA_TRACE_CUH
#define G4_CUDA_TRACE_CUH

#ifdef G4_TRACE
#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/common.cuh"
#include "cuda/trace.h"

/* Each translation unit has its own copy of these (no relocatable device
 * code); g4k_trace_begin sets every unit's copy through the bind function it
 * registered at start-up. */
static __device__ g4k_trace_rec *g4k_trace_buf; /* non-null: recording */
static __device__ unsigned *g4k_trace_count;    /* [SM] records so far */
static __device__ int g4k_trace_per_sm, g4k_trace_sms;

/* buf switches recording on and off: it is set last when starting and first when
 * stopping, so a kernel that sees it set finds the rest set too */
static int g4k_trace_bind_unit(g4k_trace_rec *buf, unsigned *count, int per_sm, int sms) {
    if (!buf && cudaMemcpyToSymbol(g4k_trace_buf, &buf, sizeof buf) != cudaSuccess) return 1;
    if (cudaMemcpyToSymbol(g4k_trace_per_sm, &per_sm, sizeof per_sm) != cudaSuccess ||
        cudaMemcpyToSymbol(g4k_trace_sms, &sms, sizeof sms) != cudaSuccess ||
        cudaMemcpyToSymbol(g4k_trace_count, &count, sizeof count) != cudaSuccess)
        return 1;
    return buf && cudaMemcpyToSymbol(g4k_trace_buf, &buf, sizeof buf) != cudaSuccess;
}
static const int g4k_trace_registered __attribute__((unused)) = g4k_trace_register(g4k_trace_bind_unit);

struct g4k_trace_scope {
    uint64_t t0, t1;
    const void *what;
    uint32_t tag;
    __device__ g4k_trace_scope(uint32_t kind, const void *w) : t0(g4k_globaltimer()), t1(0), what(w), tag(kind) {}
    __device__ void waited() { t1 = g4k_globaltimer(); }
    __device__ ~g4k_trace_scope() {
        if (threadIdx.x || !g4k_trace_buf) return;
        unsigned sm;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        if ((int)sm >= g4k_trace_sms) return; /* %smid need not be below the SM count */
        const unsigned i = atomicAdd(&g4k_trace_count[sm], 1u); /* per SM: few blocks contend */
        if ((int)i >= g4k_trace_per_sm) return;
        const uint32_t block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        g4k_trace_buf[(size_t)sm * g4k_trace_per_sm + i] = {tag, block, (uint64_t)(uintptr_t)what, t0, t1,
                                                             g4k_globaltimer()};
    }
};
#define G4K_TRACE(kind, what) g4k_trace_scope g4k_trace_(kind, what)
#define G4K_TRACE_WAITED() g4k_trace_.waited()
#else
#define G4K_TRACE(kind, what)
#define G4K_TRACE_WAITED()
#endif

#endif
