/* The CPU reference engine against HF transformers 5.17 (fixtures from
 * tools/golden_hf.py, run on the GPU machine): four small random
 * gemma4_unified models, BF16 and fp8_pb_wo weights.
 *
 * - logits of the prompt (prefill) and of 32+ teacher-forced decode steps
 *   within 1e-3 relative (fp32 math on both sides), greedy tokens identical;
 * - FP8 KV cache: free-running greedy equals the BF16-KV run for 32 steps;
 *   the logit error of FP8 KV is printed (recorded), not asserted. */
#include "test.h"
#include "util/file.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "model/config.h"
#include "model/safetensors.h"

#define REL_TOL 1e-3

static const char *models[] = {"a_h96", "b_h128", "c_h200", "d_h64_mm", "e_h128_16h",
                               "a_h96_fp8", "b_h128_fp8", "c_h200_fp8", "d_h64_mm_fp8", "e_h128_16h_fp8"};
#define N_MODELS (int)(sizeof models / sizeof models[0])

typedef struct {
    st_file *f;
    const int64_t *prompt, *decode_ids;
    const float *prefill, *decode;
    int T, S;
} golden;

static int load_golden(const char *dir, golden *g) {
    char path[600];
    g4_err err;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    if (!(g->f = st_open(path, &err))) {
        fprintf(stderr, "  %s\n", err.msg);
        return -1;
    }
    const st_tensor *p = st_find(g->f, "prompt_ids"), *pl = st_find(g->f, "prefill_logits");
    const st_tensor *d = st_find(g->f, "decode_ids"), *dl = st_find(g->f, "decode_logits");
    if (!p || !pl || !d || !dl) return -1;
    g->prompt = p->data, g->prefill = pl->data, g->decode_ids = d->data, g->decode = dl->data;
    g->T = (int)p->shape[0], g->S = (int)d->shape[0];
    return 0;
}

static double rel_err(const float *a, const float *ref, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) num += (double)(a[i] - ref[i]) * (a[i] - ref[i]), den += (double)ref[i] * ref[i];
    return sqrt(num / den);
}

static g4_engine *open_engine(const char *dir, g4_kv_dtype kv) {
    g4_engine_opts o;
    g4_engine_default_opts(&o);
    o.device = t_device(); /* G4_TEST_DEVICE=cuda runs the same checks on the GPU */
    o.kv_dtype = kv;
    o.max_context = 128;
    g4_err err;
    g4_engine *e = g4_engine_create(dir, &o, &err);
    if (!e) fprintf(stderr, "  %s\n", err.msg);
    return e;
}

static void check_model_against_hf(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf/%s", t_fixture_dir(), name);
    golden g;
    REQUIRE(load_golden(dir, &g) == 0);
    g4_engine *e = open_engine(dir, G4_KV_F32);
    REQUIRE(e);
    const int V = g4_engine_config(e)->vocab_size;
    int32_t *ids = malloc(sizeof(int32_t) * g.T);
    for (int t = 0; t < g.T; t++) ids[t] = (int32_t)g.prompt[t];
    float *logits = malloc(sizeof(float) * (size_t)g.T * V);
    g4_err err;
    int seq = g4_engine_seq_alloc(e, &err);
    g4_batch_item it = {seq, ids, g.T, true};
    REQUIRE(g4_engine_forward(e, &it, 1, logits, &err) == 0);
    double worst = 0;
    for (int t = 0; t < g.T; t++) {
        double r = rel_err(logits + (size_t)t * V, g.prefill + (size_t)t * V, V);
        worst = t_worse(worst, r);
        CHECKF(g4_argmax(logits + (size_t)t * V, V, NULL, 0) == g4_argmax(g.prefill + (size_t)t * V, V, NULL, 0),
               "%s prompt position %d: greedy token differs", name, t);
    }
    CHECKF(worst < REL_TOL, "%s prefill: relative error %.3g", name, worst);
    double worst_dec = 0;
    for (int i = 1; i < g.S; i++) { /* teacher forcing: feed HF's tokens */
        int32_t tok = (int32_t)g.decode_ids[i - 1];
        g4_batch_item step = {seq, &tok, 1, false};
        REQUIRE(g4_engine_forward(e, &step, 1, logits, &err) == 0);
        double r = rel_err(logits, g.decode + (size_t)i * V, V);
        worst_dec = t_worse(worst_dec, r);
        CHECKF(g4_argmax(logits, V, NULL, 0) == g.decode_ids[i], "%s decode step %d: greedy token differs", name, i);
    }
    CHECKF(worst_dec < REL_TOL, "%s decode: relative error %.3g", name, worst_dec);
    printf("     %-14s prefill %d tokens rel err %.2e, %d decode steps rel err %.2e\n", name, g.T, worst, g.S - 1,
           worst_dec);
    free(ids);
    free(logits);
    g4_engine_free(e);
    st_close(g.f);
}

/* Free-running greedy decode of n steps; returns the tokens, fills logits history. */
static void greedy_run(g4_engine *e, const golden *g, int n, int32_t *out, float *hist, int V) {
    g4_err err;
    int seq = g4_engine_seq_alloc(e, &err);
    int32_t *ids = malloc(sizeof(int32_t) * g->T);
    for (int t = 0; t < g->T; t++) ids[t] = (int32_t)g->prompt[t];
    g4_batch_item it = {seq, ids, g->T, false};
    g4_engine_forward(e, &it, 1, hist, &err);
    for (int i = 0; i < n; i++) {
        out[i] = g4_argmax(hist + (size_t)i * V, V, NULL, 0);
        if (i + 1 == n) break;
        g4_batch_item step = {seq, &out[i], 1, false};
        g4_engine_forward(e, &step, 1, hist + (size_t)(i + 1) * V, &err);
    }
    free(ids);
}

static void check_fp8_kv(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/hf/%s", t_fixture_dir(), name);
    golden g;
    REQUIRE(load_golden(dir, &g) == 0);
    g4_engine *bf = open_engine(dir, G4_KV_BF16), *f8 = open_engine(dir, G4_KV_FP8);
    REQUIRE(bf && f8);
    const int V = g4_engine_config(bf)->vocab_size, n = 32;
    int32_t a[32], b[32];
    float *ha = malloc(sizeof(float) * n * V), *hb = malloc(sizeof(float) * n * V);
    greedy_run(bf, &g, n, a, ha, V);
    greedy_run(f8, &g, n, b, hb, V);
    int same = 0;
    while (same < n && a[same] == b[same]) same++;
    CHECKF(same == n, "%s: FP8 KV greedy departs from BF16 KV at step %d", name, same);
    double worst = 0;
    for (int i = 0; i < same; i++) {
        double r = rel_err(hb + (size_t)i * V, ha + (size_t)i * V, V);
        worst = t_worse(worst, r);
    }
    printf("     %-14s FP8 KV vs BF16 KV: %d/%d greedy tokens equal, logits rel err %.2e\n", name, same, n, worst);
    free(ha);
    free(hb);
    g4_engine_free(bf);
    g4_engine_free(f8);
    st_close(g.f);
}

/* The converter's spelling and save_pretrained's per_layer_config give one blueprint. */
static void test_config_spellings(void) {
    for (int i = 0; i < N_MODELS / 2; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/hf/%s/config.json", t_fixture_dir(), models[i]);
        snprintf(b, sizeof b, "%s/hf/%s/config.global_spelling.json", t_fixture_dir(), models[i]);
        char *ta = g4_read_file(a, NULL), *tb = g4_read_file(b, NULL);
        REQUIRE(ta && tb);
        g4_config ca, cb;
        g4_err err;
        CHECKF(g4_config_parse(ta, a, &ca, &err) == 0, "%s", err.msg);
        CHECKF(g4_config_parse(tb, b, &cb, &err) == 0, "%s", err.msg);
        CHECK(ca.n_layers == cb.n_layers);
        for (int l = 0; l < ca.n_layers; l++) CHECKF(!memcmp(&ca.layer[l], &cb.layer[l], sizeof ca.layer[l]), "%s layer %d", models[i], l);
        free(ta), free(tb);
    }
}

static void test_a_h96(void) { check_model_against_hf("a_h96"); }
static void test_b_h128(void) { check_model_against_hf("b_h128"); }
static void test_c_h200(void) { check_model_against_hf("c_h200"); }
static void test_d_h64_mm(void) { check_model_against_hf("d_h64_mm"); }
static void test_e_h128_16h(void) { check_model_against_hf("e_h128_16h"); }
static void test_e_h128_16h_fp8(void) { check_model_against_hf("e_h128_16h_fp8"); }
static void test_a_h96_fp8(void) { check_model_against_hf("a_h96_fp8"); }
static void test_b_h128_fp8(void) { check_model_against_hf("b_h128_fp8"); }
static void test_c_h200_fp8(void) { check_model_against_hf("c_h200_fp8"); }
static void test_d_h64_mm_fp8(void) { check_model_against_hf("d_h64_mm_fp8"); }
static void test_fp8_kv_cache(void) {
    for (int i = 0; i < N_MODELS; i++) check_fp8_kv(models[i]);
}

TEST_MAIN("golden_hf", TEST_CASE(test_config_spellings), TEST_CASE(test_a_h96), TEST_CASE(test_b_h128),
          TEST_CASE(test_c_h200), TEST_CASE(test_d_h64_mm), TEST_CASE(test_e_h128_16h), TEST_CASE(test_a_h96_fp8), TEST_CASE(test_b_h128_fp8),
          TEST_CASE(test_c_h200_fp8), TEST_CASE(test_d_h64_mm_fp8), TEST_CASE(test_e_h128_16h_fp8), TEST_CASE(test_fp8_kv_cache))
