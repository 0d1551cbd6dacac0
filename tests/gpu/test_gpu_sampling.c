/* The GPU sampler against the CPU one (run on a GPU machine: make test-gpu).
 * 1. g4k_sample on random logits rows (the real vocabulary and small ones,
 *    with ties, suppressed ids holding the largest logits, -inf entries) picks
 *    the same token as g4_sample for 200 consecutive draws of each row, every
 *    row with its own parameters and seed, and leaves the same random state.
 * 2. g4_engine_decode with Gemma's defaults and seed 7 on every HF fixture:
 *    the GPU's decode graph (GPU sampler) gives the same 64 tokens as g4_sample
 *    over the GPU's logits, and as the CPU engine (see
 *    test_engine_decode_fixtures for the one exception a logits difference
 *    can make). */
#include "test.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/safetensors.h"

#if G4_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "cuda/kernels.h"

#define DRAWS 200

/* The parameter sets of the rows (row m: sets[m % N_SETS]). */
static const struct {
    const char *name;
    g4_sampling p;
} sets[] = {
    {"defaults", {1.0f, 64, 0.95f, 0.0f, 7}},
    {"top_k 1", {1.0f, 1, 0.95f, 0.0f, 8}},
    {"top_p 1 top_k 64", {1.0f, 64, 1.0f, 0.0f, 9}},
    {"min_p 0.1", {1.0f, 64, 1.0f, 0.1f, 10}},
    {"temperature 0.7", {0.7f, 64, 0.95f, 0.0f, 11}},
    {"greedy", {0.0f, 64, 0.95f, 0.0f, 12}},
    {"top_k 5 top_p 0.5 min_p 0.05 T 1.3", {1.3f, 5, 0.5f, 0.05f, 13}},
};
#define N_SETS (int)(sizeof sets / sizeof sets[0])

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(void) { /* test data only */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static float uniform(void) { return (rnd() & 0xffffff) / 16777216.0f; }

/* A row of logits: a broad body, a few strong ids (so that top-p and min-p
 * cut inside the top 64), values on a 1/16 grid near the top (ties decided by
 * id), the suppressed ids above everything, and a few -inf. */
static void fill_row(float *row, int vocab, int sup0, int sup1) {
    for (int i = 0; i < vocab; i++) row[i] = (uniform() + uniform() + uniform() - 1.5f) * 3.0f;
    const int hot = 4 + rnd() % 60;
    for (int h = 0; h < hot; h++) row[rnd() % vocab] = 6.0f + roundf(uniform() * 64.0f) / 16.0f;
    for (int t = 0; t < 8; t++) { /* exact ties at the very top */
        const int i = rnd() % vocab, j = rnd() % vocab;
        row[j] = row[i];
    }
    for (int t = 0; t < 4; t++) row[rnd() % vocab] = -INFINITY;
    row[sup0] = 20.0f;
    if (rnd() & 1) row[sup1] = 20.0f;
}

static void check_vocab(int vocab, int M) {
    const int sup0 = vocab - 7, sup1 = 3;
    const size_t n = (size_t)M * vocab;
    float *logits = malloc(sizeof(float) * n), *copy = malloc(sizeof(float) * vocab);
    g4k_sampling hp[16];
    uint64_t rng[16];
    g4_sampler *cpu[16];
    for (int m = 0; m < M; m++) {
        const g4_sampling *p = &sets[m % N_SETS].p;
        hp[m] = (g4k_sampling){p->temperature, p->top_k, p->top_p, p->min_p};
        cpu[m] = g4_sampler_create(p, vocab, (int[]){sup0, sup1}, 2);
        rng[m] = g4_sampler_rng_init(p->seed);
    }
    float *d_logits;
    int32_t *d_tokens;
    g4k_sampling *d_params;
    uint64_t *d_rng;
    void *scratch;
    cudaStream_t s;
    REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_logits, sizeof(float) * n) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_tokens, sizeof(int32_t) * M) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_params, sizeof(g4k_sampling) * M) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_rng, sizeof(uint64_t) * M) == cudaSuccess);
    REQUIRE(cudaMalloc(&scratch, g4k_sample_scratch_bytes(M, vocab)) == cudaSuccess);
    REQUIRE(cudaMemcpy(d_params, hp, sizeof(g4k_sampling) * M, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpy(d_rng, rng, sizeof(uint64_t) * M, cudaMemcpyHostToDevice) == cudaSuccess);
    int bad[16] = {0}, sampled_distinct[16] = {0};
    for (int d = 0; d < DRAWS; d++) {
        for (int m = 0; m < M; m++) fill_row(logits + (size_t)m * vocab, vocab, sup0, sup1);
        REQUIRE(cudaMemcpy(d_logits, logits, sizeof(float) * n, cudaMemcpyHostToDevice) == cudaSuccess);
        REQUIRE(g4k_sample(d_tokens, d_logits, M, vocab, hp, d_params, d_rng, scratch, sup0, sup1, s) == 0);
        int32_t gpu[16];
        REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
        REQUIRE(cudaMemcpy(gpu, d_tokens, sizeof(int32_t) * M, cudaMemcpyDeviceToHost) == cudaSuccess);
        for (int m = 0; m < M; m++) {
            memcpy(copy, logits + (size_t)m * vocab, sizeof(float) * vocab);
            const int32_t want = g4_sample(cpu[m], copy);
            const int32_t greedy = g4_argmax(logits + (size_t)m * vocab, vocab, (int[]){sup0, sup1}, 2);
            sampled_distinct[m] += want != greedy;
            if (gpu[m] != want && bad[m]++ < 3)
                fprintf(stderr, "  vocab %d row %d (%s) draw %d: GPU %d (logit %g), CPU %d (logit %g)\n", vocab, m,
                        sets[m % N_SETS].name, d, gpu[m], gpu[m] >= 0 && gpu[m] < vocab ? logits[(size_t)m * vocab + gpu[m]] : NAN,
                        want, logits[(size_t)m * vocab + want]);
        }
    }
    REQUIRE(cudaMemcpy(rng, d_rng, sizeof(uint64_t) * M, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int m = 0; m < M; m++) {
        CHECKF(bad[m] == 0, "vocab %d, %s: %d of %d draws differ", vocab, sets[m % N_SETS].name, bad[m], DRAWS);
        CHECKF(rng[m] == cpu[m]->rng, "vocab %d, %s: the random state differs after %d draws", vocab,
               sets[m % N_SETS].name, DRAWS);
        if (sets[m % N_SETS].p.temperature > 0 && sets[m % N_SETS].p.top_k > 5) /* the data makes sampling matter */
            CHECKF(sampled_distinct[m] > DRAWS / 20, "vocab %d, %s: only %d draws left the argmax", vocab,
                   sets[m % N_SETS].name, sampled_distinct[m]);
        printf("     vocab %6d  %-36s %d/%d draws equal (%d not the argmax)\n", vocab, sets[m % N_SETS].name,
               DRAWS - bad[m], DRAWS, sampled_distinct[m]);
        g4_sampler_free(cpu[m]);
    }
    cudaFree(d_logits), cudaFree(d_tokens), cudaFree(d_params), cudaFree(d_rng), cudaFree(scratch);
    cudaStreamDestroy(s);
    free(logits);
    free(copy);
}

/* GPU time of one sampling of a 262144-wide row (M = 1) and of the argmax, for
 * the record (no check: the decode graph's timing is g4 bench --sample). */
static void time_sampler(void) {
    const int vocab = 262144, reps = 200;
    float *logits = malloc(sizeof(float) * vocab), *d_logits;
    for (int i = 0; i < vocab; i++) logits[i] = (uniform() - 0.5f) * 10.0f;
    const g4k_sampling hp = {1.0f, 64, 0.95f, 0.0f};
    const uint64_t state = g4_sampler_rng_init(1);
    int32_t *d_tokens;
    g4k_sampling *d_params;
    uint64_t *d_rng;
    void *scratch;
    cudaStream_t s;
    cudaEvent_t ev[3];
    REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_logits, sizeof(float) * vocab) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_tokens, sizeof(int32_t)) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_params, sizeof hp) == cudaSuccess);
    REQUIRE(cudaMalloc((void **)&d_rng, sizeof state) == cudaSuccess);
    REQUIRE(cudaMalloc(&scratch, g4k_sample_scratch_bytes(1, vocab)) == cudaSuccess);
    REQUIRE(cudaMemcpy(d_logits, logits, sizeof(float) * vocab, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpy(d_params, &hp, sizeof hp, cudaMemcpyHostToDevice) == cudaSuccess);
    REQUIRE(cudaMemcpy(d_rng, &state, sizeof state, cudaMemcpyHostToDevice) == cudaSuccess);
    for (int i = 0; i < 3; i++) cudaEventCreate(&ev[i]);
    for (int w = 0; w < 10; w++) g4k_sample(d_tokens, d_logits, 1, vocab, &hp, d_params, d_rng, scratch, -1, -1, s);
    cudaEventRecord(ev[0], s);
    for (int r = 0; r < reps; r++) g4k_sample(d_tokens, d_logits, 1, vocab, &hp, d_params, d_rng, scratch, -1, -1, s);
    cudaEventRecord(ev[1], s);
    for (int r = 0; r < reps; r++) g4k_argmax(d_tokens, d_logits, 1, vocab, -1, -1, s);
    cudaEventRecord(ev[2], s);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    float ms_sample = 0, ms_argmax = 0;
    cudaEventElapsedTime(&ms_sample, ev[0], ev[1]);
    cudaEventElapsedTime(&ms_argmax, ev[1], ev[2]);
    printf("     vocab %d, M 1, back to back: g4k_sample %.1f us, g4k_argmax %.1f us per call\n", vocab,
           1e3 * ms_sample / reps, 1e3 * ms_argmax / reps);
    for (int i = 0; i < 3; i++) cudaEventDestroy(ev[i]);
    cudaFree(d_logits), cudaFree(d_tokens), cudaFree(d_params), cudaFree(d_rng), cudaFree(scratch);
    cudaStreamDestroy(s);
    free(logits);
}

static void test_real_vocab(void) {
    check_vocab(262144, N_SETS);
    time_sampler();
}
/* one slice of a pass-1 block, partly filled; several slices, the last partial */
static void test_small_vocabs(void) {
    check_vocab(100, N_SETS);
    check_vocab(1000, 2 * N_SETS);
    check_vocab(5000, N_SETS);
}

static void test_unsupported_parameters(void) {
    g4k_sampling p = {1.0f, 0, 0.95f, 0.0f};
    CHECK(!g4k_sample_supported(&p));
    p.top_k = G4K_SAMPLE_TOPK + 1;
    CHECK(!g4k_sample_supported(&p));
    p.top_k = G4K_SAMPLE_TOPK;
    CHECK(g4k_sample_supported(&p));
    p.temperature = 0.0f, p.top_k = 0;
    CHECK(g4k_sample_supported(&p));
    /* the launcher refuses without launching (no device memory is touched) */
    g4k_sampling rows[2] = {{0.0f, 0, 1.0f, 0.0f}, {1.0f, 0, 1.0f, 0.0f}};
    CHECK(g4k_sample(NULL, NULL, 2, 1000, rows, NULL, NULL, NULL, -1, -1, NULL) == -1);
}

/* ------------------------------------------------------------ the engine on the HF fixtures */

static const char *models[] = {"a_h96", "b_h128", "c_h200", "d_h64_mm", "e_h128_16h",
                               "a_h96_fp8", "b_h128_fp8", "c_h200_fp8", "d_h64_mm_fp8", "e_h128_16h_fp8"};
#define N_MODELS (int)(sizeof models / sizeof models[0])
#define STEPS 64

/* Prefill of the prompt, then STEPS decode steps: with g4_engine_decode, or
 * (logits != NULL) one forward per step and g4_sample over its logits on the
 * host, keeping each step's logits in logits[STEPS][vocab]. */
static int sample_run(const char *dir, g4_device dev, const int32_t *prompt, int T, const g4_sampling *p, float *logits,
                      int32_t *out) {
    g4_engine_opts o;
    g4_engine_default_opts(&o);
    o.device = dev, o.kv_dtype = G4_KV_F32, o.max_context = T + STEPS + 1;
    g4_err err;
    g4_engine *e = g4_engine_create(dir, &o, &err);
    if (!e) return fprintf(stderr, "  %s\n", err.msg), -1;
    const g4_config *c = g4_engine_config(e);
    const int V = c->vocab_size;
    float *l = malloc(sizeof(float) * V);
    int seq = g4_engine_seq_alloc(e, &err);
    g4_batch_item it = {seq, prompt, T - 1, false}; /* the last prompt token is the first decode input */
    int rc = g4_engine_forward(e, &it, 1, l, &err);
    if (!rc && !logits) rc = g4_engine_decode(e, seq, prompt[T - 1], STEPS, p, out, NULL, &err);
    if (!rc && logits) {
        g4_sampler *s = g4_sampler_create(p, V, (int[]){c->eoi_token_id, c->eoa_token_id}, 2);
        int32_t tok = prompt[T - 1];
        for (int i = 0; i < STEPS && !rc; i++) {
            g4_batch_item step = {seq, &tok, 1, false};
            float *li = logits + (size_t)i * V;
            if (!(rc = g4_engine_forward(e, &step, 1, li, &err))) {
                memcpy(l, li, sizeof(float) * V);
                tok = out[i] = g4_sample(s, l);
            }
        }
        g4_sampler_free(s);
    }
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    free(l);
    g4_engine_free(e);
    return rc;
}

/* GPU and CPU logits differ by ~1e-5, and sampling is discontinuous: a draw
 * that lands within ~1e-5 of a boundary of the cumulative probabilities, or a
 * cumulative sum within ~1e-5 of top_p, picks a different token. Over 64 steps
 * on 10 fixtures (flat distributions, ~0.02 per candidate) that is a real
 * chance, so the checks are:
 *   - strict: the GPU's decode graph (GPU sampler) gives the same 64 tokens as
 *     g4_sample over the GPU's own logits, step by step on the host;
 *   - GPU == CPU for all 64 tokens, except that at the first step where they
 *     differ (if any) the two runs have had the same tokens and made the same
 *     number of draws, so their random states are equal and only the logits
 *     can make the difference: there the logits must agree within 1e-3 (the
 *     ~1e-5 of the forward pass, with margin), after which the sequences
 *     legitimately part. */
static void test_engine_decode_fixtures(void) {
    g4_sampling p;
    g4_sampling_defaults(&p);
    p.seed = 7;
    for (int i = 0; i < N_MODELS; i++) {
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/hf/%s", t_fixture_dir(), models[i]);
        snprintf(path, sizeof path, "%s/golden.safetensors", dir);
        g4_err err;
        st_file *f = st_open(path, &err);
        REQUIRE(f);
        const st_tensor *pt = st_find(f, "prompt_ids");
        const int T = (int)pt->shape[0];
        int32_t *prompt = malloc(sizeof(int32_t) * T), cpu[STEPS], cpu_hand[STEPS], gpu[STEPS], gpu_hand[STEPS];
        for (int t = 0; t < T; t++) prompt[t] = (int32_t)((const int64_t *)pt->data)[t];
        g4_engine_opts o;
        g4_engine_default_opts(&o);
        g4_engine *e = g4_engine_create(dir, &o, &err);
        REQUIRE(e);
        const int vocab = g4_engine_config(e)->vocab_size;
        g4_engine_free(e);
        const size_t V = (size_t)vocab;
        float *lc = malloc(sizeof(float) * STEPS * V), *lg = malloc(sizeof(float) * STEPS * V);
        int rc = sample_run(dir, G4_DEVICE_CPU, prompt, T, &p, NULL, cpu);
        rc = rc || sample_run(dir, G4_DEVICE_CPU, prompt, T, &p, lc, cpu_hand);
        rc = rc || sample_run(dir, G4_DEVICE_CUDA, prompt, T, &p, NULL, gpu);
        rc = rc || sample_run(dir, G4_DEVICE_CUDA, prompt, T, &p, lg, gpu_hand);
        CHECK(rc == 0);
        if (!rc) {
            int strict = 0, same = 0;
            while (strict < STEPS && gpu[strict] == gpu_hand[strict]) strict++;
            while (same < STEPS && gpu[same] == cpu[same]) same++;
            CHECK(memcmp(cpu, cpu_hand, sizeof cpu) == 0);
            CHECKF(strict == STEPS, "%s: the GPU sampler departs from g4_sample over the GPU's logits at step %d",
                   models[i], strict);
            double diff = 0;
            if (same < STEPS) { /* the first difference: same context, same random state, so the logits decide */
                CHECK(memcmp(gpu, gpu_hand, sizeof(int32_t) * same) == 0 && memcmp(cpu, cpu_hand, sizeof cpu) == 0);
                for (size_t v = 0; v < V; v++) {
                    const double d = fabs((double)lc[same * V + v] - lg[same * V + v]);
                    diff = d > diff ? d : diff;
                }
                CHECKF(diff < 1e-3, "%s: GPU and CPU part at step %d with logits %g apart", models[i], same,
                       diff);
            }
            printf("     %-14s GPU sampler == host sampling of the GPU logits: %d/%d; GPU == CPU: %d/%d%s\n",
                   models[i], strict, STEPS, same, STEPS,
                   same < STEPS ? " (then a sampling boundary: logits within 1e-3)" : "");
            if (same < STEPS) printf("                    logits at the parting step differ by at most %.3g\n", diff);
        }
        free(lc);
        free(lg);
        free(prompt);
        st_close(f);
    }
}

TEST_MAIN("gpu_sampling", TEST_CASE(test_unsupported_parameters), TEST_CASE(test_small_vocabs),
          TEST_CASE(test_real_vocab), TEST_CASE(test_engine_decode_fixtures))
#else
static void test_no_cuda(void) { printf("     built without CUDA: nothing to check\n"); }
TEST_MAIN("gpu_sampling", TEST_CASE(test_no_cuda))
#endif
