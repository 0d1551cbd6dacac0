/* g4 bench --model-path DIR [--prompt-len 145,1024,8192] [--gen 410] [--device cuda|cpu] [--kv-cache fp8|bf16|f32]
 *          [--profile] [--sample] (decode with Gemma's default sampling instead of greedy)
 * TTFT and ITL (median, p90) per prompt length, tok/s, bytes per decode step
 * and the fraction of the bandwidth floor, with the ceiling re-measured in
 * the same run (a streaming read on the GPU). Prompts are random ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "util/progress.h"
#if G4_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#define MAX_LENS 8

typedef struct {
    const char *model;
    int lens[MAX_LENS], n_lens, gen, reps;
    bool profile;
    bool sample;              /* decode with Gemma's default sampling (seed 0) instead of greedy */
    g4_engine_opts engine;
} bench_args;

static int parse_lens(const char *s, bench_args *a) {
    a->n_lens = 0;
    while (*s && a->n_lens < MAX_LENS) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) return -1;
        a->lens[a->n_lens++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return a->n_lens ? 0 : -1;
}

static int parse(int argc, char **argv, bench_args *a) {
    memset(a, 0, sizeof *a);
    a->lens[0] = 145, a->n_lens = 1, a->gen = 410, a->reps = 3;
    g4_engine_default_opts(&a->engine);
    a->engine.device = G4_DEVICE_CUDA;
    int missing = 0;
    const char *v;
    for (int i = 1; i < argc && !missing; i++) {
        if ((v = arg_value(&i, argc, argv, "--model-path", &missing))) a->model = v;
        else if ((v = arg_value(&i, argc, argv, "--prompt-len", &missing))) {
            if (parse_lens(v, a)) return -1;
        } else if ((v = arg_value(&i, argc, argv, "--gen", &missing))) a->gen = atoi(v);
        else if ((v = arg_value(&i, argc, argv, "--reps", &missing))) a->reps = atoi(v);
        else if ((v = arg_value(&i, argc, argv, "--kv-cache", &missing))) {
            if (g4_kv_dtype_parse(v, &a->engine.kv_dtype)) return -1;
        } else if ((v = arg_value(&i, argc, argv, "--device", &missing))) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda")) return -1;
            a->engine.device = strcmp(v, "cpu") ? G4_DEVICE_CUDA : G4_DEVICE_CPU;
        } else if (!strcmp(argv[i], "--profile")) a->profile = true;
        else if (!strcmp(argv[i], "--sample")) a->sample = true;
        else if (!missing) return -1;
    }
    return missing || !a->model || a->gen < 2 || a->reps < 1 ? -1 : 0;
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static float percentile(float *v, int n, double p) {
    qsort(v, n, sizeof *v, cmp_float);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

/* Bytes one decode step must read: every weight once (the tied head too) and
 * the KV cache at this context (sliding layers see at most `window` rows). */
static double step_bytes(const g4_weights *w, int context, g4_kv_dtype kv) {
    const g4_config *c = &w->cfg;
    double bytes = g4_matrix_bytes(&w->embed);
    const double elem = kv == G4_KV_F32 ? 4 : kv == G4_KV_BF16 ? 2 : 1;
    for (int l = 0; l < c->n_layers; l++) {
        const g4_layer_weights *lw = &w->layers[l];
        const g4_matrix *m[7] = {&lw->q, &lw->k, &lw->v, &lw->o, &lw->gate, &lw->up, &lw->down};
        for (int i = 0; i < 7; i++) bytes += g4_matrix_bytes(m[i]);
        const int rows = c->layer[l].window && c->layer[l].window < context ? c->layer[l].window : context;
        bytes += 2.0 * rows * g4_layer_kv_dim(c, l) * elem;
    }
    return bytes;
}

static void print_stages(const char *what, int n, const double *ms, const char **names) {
    double total = 0;
    for (int i = 0; i < n; i++) total += ms[i];
    printf("  %s by stage (without the graph, events between stages; %.3f ms in all):\n", what, total);
    for (int i = 0; i < n; i++)
        if (ms[i] > 0) printf("    %-28s %8.3f ms %5.1f%%\n", names[i], ms[i], 100 * ms[i] / total);
}

/* Stage times of one decode step at the end of seq, then of the prefill of
 * the prompt into a fresh sequence. */
static void print_profile(g4_engine *e, int seq, int32_t token, const int32_t *prompt, int len) {
    double ms[16];
    const char *names[16];
    g4_err err;
    int n = g4_engine_profile_step(e, seq, token, ms, names, &err);
    if (n > 0) print_stages("decode step", n, ms, names);
    int fresh = n > 0 ? g4_engine_seq_alloc(e, &err) : -1;
    if (fresh >= 0) {
        n = g4_engine_profile_prefill(e, fresh, prompt, len, ms, names, &err);
        if (n > 0) print_stages("prefill", n, ms, names);
        g4_engine_seq_free(e, fresh);
    }
    if (n < 0 || fresh < 0) fprintf(stderr, "g4 bench: %s\n", err.msg);
}

static int run_length(g4_engine *e, const bench_args *a, int len, double gbs) {
    g4_err err;
    const g4_config *c = g4_engine_config(e);
    int32_t *prompt = malloc(sizeof(int32_t) * len), *out = malloc(sizeof(int32_t) * a->gen);
    float *logits = malloc(sizeof(float) * c->vocab_size), *ttft = malloc(sizeof(float) * a->reps);
    float *itl = malloc(sizeof(float) * a->gen);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < len; i++) x ^= x << 13, x ^= x >> 7, x ^= x << 17, prompt[i] = 3 + (int32_t)(x % (uint64_t)(c->vocab_size - 3));
    int seq = -1, rc = 0;
    for (int r = 0; r < a->reps && !rc; r++) { /* TTFT: prefill of the whole prompt to its logits on the host */
        if (seq >= 0) g4_engine_seq_free(e, seq);
        seq = g4_engine_seq_alloc(e, &err);
        double t0 = g4_now();
        g4_batch_item it = {seq, prompt, len, false};
        rc = g4_engine_forward(e, &it, 1, logits, &err);
        ttft[r] = (float)((g4_now() - t0) * 1e3);
    }
    g4_sampling sp;
    g4_sampling_defaults(&sp);
    if (!a->sample) sp.temperature = 0.0f;
    if (!rc) rc = g4_engine_decode(e, seq, prompt[len - 1], a->gen, &sp, out, itl, &err);
    if (rc) {
        fprintf(stderr, "g4 bench: %s\n", err.msg);
    } else {
        /* the first step includes graph capture on the GPU: leave it out */
        const float med = percentile(itl + 1, a->gen - 1, 0.5), p90 = percentile(itl + 1, a->gen - 1, 0.9);
        const double bytes = step_bytes(g4_engine_weights(e), len + a->gen / 2, a->engine.kv_dtype);
        const double floor_ms = gbs > 0 ? bytes / (gbs * 1e9) * 1e3 : 0;
        printf("%8d %10.2f %9.3f %9.3f %9.1f %11.3f %9.3f %8.1f%%\n", len, percentile(ttft, a->reps, 0.5), med, p90,
               1000.0 / med, bytes / 1e9, floor_ms, floor_ms > 0 ? 100.0 * floor_ms / med : 0.0);
    }
    if (!rc && a->profile) print_profile(e, seq, out[a->gen - 1], prompt, len);
    g4_engine_seq_free(e, seq);
    free(prompt), free(out), free(logits), free(ttft), free(itl);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    bench_args a;
    if (parse(argc, argv, &a)) {
        fprintf(stderr, "usage: g4 bench --model-path DIR [--prompt-len 145,1024,8192] [--gen 410] [--reps 3]\n"
                        "                [--device cuda|cpu] [--kv-cache fp8|bf16|f32] [--profile] [--sample]\n");
        return 2;
    }
    int longest = 0;
    for (int i = 0; i < a.n_lens; i++) longest = a.lens[i] > longest ? a.lens[i] : longest;
    a.engine.max_context = longest + a.gen + 1;
    if (a.profile) a.engine.max_seqs = 2; /* the prefill profile runs on a second sequence */
    g4_err err;
    double t0 = g4_now();
    g4_engine *e = g4_engine_create(a.model, &a.engine, &err);
    if (!e) {
        fprintf(stderr, "g4 bench: %s\n", err.msg);
        return 1;
    }
    const double startup = g4_now() - t0;
    double gbs = 0;
#if G4_HAVE_CUDA
    if (a.engine.device == G4_DEVICE_CUDA) gbs = g4_cuda_read_bandwidth(4ull << 30, 10, &err);
    printf("device %s, read bandwidth %.0f GB/s (4 GiB streaming read, median of 10)\n",
           a.engine.device == G4_DEVICE_CUDA ? g4_cuda_device_name() : "cpu", gbs);
#endif
    printf("model %s, KV cache %s, start-up %.2f s (load + upload)\n", a.model, g4_kv_dtype_name(a.engine.kv_dtype),
           startup);
    printf("%8s %10s %9s %9s %9s %11s %9s %9s\n", "prompt", "TTFT_ms", "ITL_med", "ITL_p90", "tok/s", "GB/step",
           "floor_ms", "of_floor");
    int rc = 0;
    for (int i = 0; i < a.n_lens && !rc; i++) rc = run_length(e, &a, a.lens[i], gbs);
    g4_engine_free(e);
    return rc ? 1 : 0;
}
