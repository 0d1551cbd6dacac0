/* Host side of the block timeline (trace.cuh, trace.h); empty unless TRACE=1. */
#ifdef G4_TRACE
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/trace.h"

#define TRACE_PER_SM 8192 /* records per SM: a decode step of the 12B puts ~600 blocks on each */
#define TRACE_UNITS 64

static int (*g_bind[TRACE_UNITS])(g4k_trace_rec *, unsigned *, int, int);
static int g_units, g_lost_units; /* units past TRACE_UNITS: g4k_trace_begin fails */
static g4k_trace_rec *g_buf;
static unsigned *g_count;

extern "C" int g4k_trace_register(int (*bind)(g4k_trace_rec *, unsigned *, int, int)) {
    if (g_units < TRACE_UNITS) g_bind[g_units++] = bind;
    else g_lost_units++;
    return 0;
}

/* Sets every unit's symbols; they are in place on the device when it returns. */
static int bind_all(g4k_trace_rec *buf, unsigned *count) {
    for (int i = 0; i < g_units; i++)
        if (g_bind[i](buf, count, TRACE_PER_SM, g4k_sm_count())) return 1;
    return cudaDeviceSynchronize() != cudaSuccess;
}

extern "C" int g4k_trace_begin(void) {
    if (g_lost_units) {
        fprintf(stderr, "trace: %d translation units past TRACE_UNITS (%d)\n", g_lost_units, TRACE_UNITS);
        return 1;
    }
    const size_t sms = (size_t)g4k_sm_count();
    if (!g_buf && (cudaMalloc(&g_buf, sms * TRACE_PER_SM * sizeof *g_buf) != cudaSuccess ||
                   cudaMalloc(&g_count, sms * sizeof *g_count) != cudaSuccess))
        return 1;
    if (cudaMemset(g_count, 0, sms * sizeof *g_count) != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess)
        return 1;
    return bind_all(g_buf, g_count);
}

extern "C" int g4k_trace_dump(const char *path) {
    const int sms = g4k_sm_count();
    if (!g_buf || cudaDeviceSynchronize() != cudaSuccess || bind_all(nullptr, nullptr)) return 1;
    std::vector<unsigned> count(sms);
    std::vector<g4k_trace_rec> rec((size_t)sms * TRACE_PER_SM);
    if (cudaMemcpy(count.data(), g_count, sms * sizeof(unsigned), cudaMemcpyDeviceToHost) != cudaSuccess ||
        cudaMemcpy(rec.data(), g_buf, rec.size() * sizeof rec[0], cudaMemcpyDeviceToHost) != cudaSuccess)
        return 1;
    uint64_t t_first = UINT64_MAX;
    for (int sm = 0; sm < sms; sm++) {
        if (count[sm] > TRACE_PER_SM) fprintf(stderr, "trace: SM %d dropped %u records\n", sm, count[sm] - TRACE_PER_SM);
        count[sm] = std::min(count[sm], (unsigned)TRACE_PER_SM); /* from here: the records kept */
        for (unsigned i = 0; i < count[sm]; i++) t_first = std::min(t_first, rec[(size_t)sm * TRACE_PER_SM + i].start);
    }
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "sm kind block what start waited end\n");
    for (int sm = 0; sm < sms; sm++) {
        for (unsigned i = 0; i < count[sm]; i++) {
            const g4k_trace_rec &r = rec[(size_t)sm * TRACE_PER_SM + i];
            fprintf(f, "%d %u %u %llx %llu %lld %llu\n", sm, r.kind, r.block, (unsigned long long)r.what,
                    (unsigned long long)(r.start - t_first), r.waited ? (long long)(r.waited - t_first) : -1LL,
                    (unsigned long long)(r.end - t_first));
        }
    }
    return fclose(f) != 0;
}
#endif
