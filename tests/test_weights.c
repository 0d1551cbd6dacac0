/* The checkpoint loader (g4_weights_load) and synthetic checkpoints, on the
 * committed HF fixtures (tests/fixtures/hf) and copies of them rewritten with
 * st_writer under tests/tmp/weights:
 *
 * - the HF/DeepSeek fine-grained FP8 layout (weight_scale_inv, 2-D) of the
 *   same weights gives the same logits as the ModelOpt layout;
 * - BF16 quantized while loading == the fixture's fp8_pb_wo bytes;
 * - NaN FP8 bytes are repaired in a private mapping (the file stays as it was);
 * - malformed checkpoints fail with errors naming the file and the tensor;
 * - KV-cache scales: valid ones used, one copied to the other, bad ones 1.0;
 * - the synthetic presets: 12B manifest, value statistics, FP8 block scales. */
#include "test.h"
#include "util/file.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "engine/engine.h"
#include "model/config.h"
#include "model/manifest.h"
#include "model/safetensors.h"
#include "model/synth.h"
#include "model/weights.h"

#define REL_TOL 1e-3
#define LM "model.language_model."

/* ------------------------------------------------------------ files */

static const char *scratch(void) { /* made once per run: t_tmp_dir wipes it */
    static char dir[512];
    if (!dir[0]) snprintf(dir, sizeof dir, "%s", t_tmp_dir("weights"));
    return dir;
}

static const char *fixture(const char *name) {
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 1024, "%s/hf/%s", t_fixture_dir(), name);
    return p;
}

static const char *scratch_path(const char *name) {
    static char path[4][1024];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 1024, "%s/%s", scratch(), name);
    return p;
}


static int copy_file(const char *src, const char *dst) {
    size_t n;
    char *buf = g4_read_file(src, &n);
    if (!buf) return -1;
    FILE *f = fopen(dst, "wb");
    int rc = f && fwrite(buf, 1, n, f) == n ? 0 : -1;
    if (f) fclose(f);
    free(buf);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* ------------------------------------------------------------ rewriting checkpoints */

/* One tensor of the rewritten checkpoint. */
typedef struct {
    char name[160];
    st_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data; /* NULL: leave the tensor out */
    void *owned;      /* freed once written */
} new_tensor;

/* Called for every tensor of the source with `out` a copy of it; changes or drops it. */
typedef void (*tensor_edit)(const st_tensor *in, new_tensor *out, const void *ctx);

/* Copies checkpoint SRC to DST: its JSON side files as they are, and
 * model.safetensors through `edit` (NULL: unchanged) plus `extra` tensors,
 * which come first in the file (so an odd-sized one shifts every offset). */
static int rewrite_ckpt(const char *src, const char *dst, tensor_edit edit, const void *ctx, const new_tensor *extra,
                        int n_extra) {
    g4_err err;
    st_model *in = st_model_open(src, &err);
    st_writer *w = in ? st_writer_create(dst, &err) : NULL;
    if (!w) {
        fprintf(stderr, "  %s\n", err.msg);
        st_model_close(in);
        return -1;
    }
    const char *side[] = {"config.json", "generation_config.json", "hf_quant_config.json"};
    for (int i = 0; i < 3; i++) {
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/%s", src, side[i]);
        snprintf(b, sizeof b, "%s/%s", dst, side[i]);
        if (access(a, F_OK) == 0 && copy_file(a, b)) return -1;
    }
    int n = n_extra + in->n_tensors;
    new_tensor *out = calloc(n, sizeof *out);
    if (n_extra) memcpy(out, extra, sizeof *extra * n_extra);
    for (int i = 0; i < in->n_tensors; i++) {
        const st_tensor *t = in->tensors[i];
        new_tensor *o = &out[n_extra + i];
        snprintf(o->name, sizeof o->name, "%s", t->name);
        o->dtype = t->dtype, o->ndim = t->ndim, o->data = t->data;
        memcpy(o->shape, t->shape, sizeof(int64_t) * t->ndim);
        if (edit) edit(t, o, ctx);
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (out[i].data) rc = st_writer_add(w, out[i].name, out[i].dtype, out[i].ndim, out[i].shape, &err);
    if (!rc) rc = st_writer_begin(w, UINT64_MAX, &err);
    for (int i = 0; i < n && !rc; i++)
        if (out[i].data) rc = st_writer_write(w, out[i].name, out[i].data, &err);
    if (!rc) rc = st_writer_finish(w, &err);
    if (rc) fprintf(stderr, "  %s\n", err.msg);
    for (int i = 0; i < n; i++) free(out[i].owned);
    free(out);
    st_writer_free(w);
    st_model_close(in);
    return rc;
}

/* Replaces (value != NULL) or deletes config.json's "quantization_config". */
static int set_quantization_config(const char *dir, json_t *value) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, JSON_PRESERVE_ORDER, &jerr);
    if (!cfg) return -1;
    if (value) json_object_set_new(cfg, "quantization_config", value);
    else json_object_del(cfg, "quantization_config");
    int rc = json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(cfg);
    return rc;
}

static g4_weights *load(const char *dir, bool quantize_bf16) {
    g4_load_opts o = {.quantize_bf16 = quantize_bf16, .calib = G4_CALIB_MAX};
    g4_err err;
    g4_weights *w = g4_weights_load(dir, &o, &err);
    if (!w) fprintf(stderr, "  %s\n", err.msg);
    return w;
}

/* Loading must fail with a message containing every fragment. */
static void expect_load_error(const char *dir, const char *const *fragments, int n) {
    g4_err err = {{0}};
    g4_weights *w = g4_weights_load(dir, NULL, &err);
    CHECKF(w == NULL, "%s loaded", dir);
    g4_weights_free(w);
    for (int i = 0; i < n; i++) CHECKF(strstr(err.msg, fragments[i]), "error lacks \"%s\": %s", fragments[i], err.msg);
}

/* The seven linears of a layer, in one order for every comparison. */
static const g4_matrix *linear(const g4_layer_weights *lw, int i) {
    const g4_matrix *m[7] = {&lw->q, &lw->k, &lw->v, &lw->o, &lw->gate, &lw->up, &lw->down};
    return m[i];
}

static bool same_matrix_bytes(const g4_matrix *a, const g4_matrix *b) {
    if (a->format != b->format || a->rows != b->rows || a->cols != b->cols) return false;
    if (!a->data || !b->data) return a->data == b->data;
    if (memcmp(a->data, b->data, (size_t)a->rows * a->cols * (a->format == G4_MAT_BF16 ? 2 : 1))) return false;
    if (a->format == G4_MAT_BF16) return true;
    return !memcmp(a->scales, b->scales, sizeof(float) * g4_qblocks(a->rows) * g4_qblocks(a->cols));
}

/* ------------------------------------------------------------ goldens and the engine */

typedef struct {
    st_file *f;
    int32_t *prompt;
    const float *prefill; /* [T, V] */
    int T;
} golden;

static int load_golden(const char *dir, golden *g) {
    char path[1024];
    g4_err err;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    if (!(g->f = st_open(path, &err))) return fprintf(stderr, "  %s\n", err.msg), -1;
    const st_tensor *p = st_find(g->f, "prompt_ids"), *pl = st_find(g->f, "prefill_logits");
    if (!p || !pl) return -1;
    g->T = (int)p->shape[0];
    g->prompt = malloc(sizeof(int32_t) * g->T);
    for (int t = 0; t < g->T; t++) g->prompt[t] = (int32_t)((const int64_t *)p->data)[t];
    g->prefill = pl->data;
    return 0;
}

static void free_golden(golden *g) {
    st_close(g->f);
    free(g->prompt);
}

/* Prefill logits [T, V] of the prompt on the CPU engine, F32 KV cache (as the goldens). */
static float *prefill(const char *dir, bool quantize_bf16, const golden *g, int *V) {
    g4_engine_opts o;
    g4_engine_default_opts(&o);
    o.kv_dtype = G4_KV_F32;
    o.max_context = 128;
    o.quantize_bf16 = quantize_bf16;
    g4_err err;
    g4_engine *e = g4_engine_create(dir, &o, &err);
    if (!e) return fprintf(stderr, "  %s\n", err.msg), NULL;
    *V = g4_engine_config(e)->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)g->T * *V);
    int seq = g4_engine_seq_alloc(e, &err);
    g4_batch_item it = {seq, g->prompt, g->T, true};
    if (g4_engine_forward(e, &it, 1, logits, &err)) {
        fprintf(stderr, "  %s\n", err.msg);
        free(logits);
        logits = NULL;
    }
    g4_engine_free(e);
    return logits;
}

/* Worst per-position relative L2 error of logits against the golden's. */
static double worst_rel_err(const float *logits, const golden *g, int V) {
    double worst = 0;
    for (int t = 0; t < g->T; t++) {
        double num = 0, den = 0;
        for (int i = 0; i < V; i++) {
            double a = logits[(size_t)t * V + i], b = g->prefill[(size_t)t * V + i];
            num += (a - b) * (a - b), den += b * b;
        }
        double r = sqrt(num / den);
        worst = t_worse(worst, r);
    }
    return worst;
}

/* ------------------------------------------------------------ synthetic checkpoints */

/* The tiny preset (262144 x 256 BF16 embedding: 128 MB), written once per run. */
static const char *tiny(g4_synth_dtype dtype) {
    static bool written[2], failed[2];
    const char *dir = scratch_path(dtype == G4_SYNTH_FP8 ? "tiny_fp8" : "tiny_bf16");
    if (!written[dtype] && !failed[dtype]) {
        g4_config cfg;
        g4_err err;
        failed[dtype] = g4_synth_preset("tiny", &cfg, &err) || g4_synth_write(&cfg, dtype, 7, dir, 0, &err);
        if (failed[dtype]) fprintf(stderr, "  synth: %s\n", err.msg);
        written[dtype] = !failed[dtype];
    }
    return written[dtype] ? dir : NULL;
}

static float bf16_at(const st_tensor *t, uint64_t i) {
    g4_bf16 h;
    memcpy(&h, (const char *)t->data + 2 * i, 2);
    return g4_bf16_to_f32(h);
}

/* ============================================================ 1. HF fine-grained FP8 */

/* ModelOpt -> HF/DeepSeek: weight_scale [R,1,C,1] becomes weight_scale_inv [R,C]. */
static void to_hf_layout(const st_tensor *in, new_tensor *out, const void *ctx) {
    if (!ends_with(in->name, ".weight_scale")) return;
    snprintf(out->name, sizeof out->name, "%s_inv", in->name);
    out->ndim = 2;
    out->shape[0] = in->shape[0], out->shape[1] = in->shape[2];
}

static void test_hf_fp8_block_layout(void) {
    const char *orig = fixture("a_h96_fp8"), *dir = scratch_path("hf_fp8");
    REQUIRE(rewrite_ckpt(orig, dir, to_hf_layout, NULL, NULL, 0) == 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/hf_quant_config.json", dir);
    REQUIRE(unlink(path) == 0);
    REQUIRE(set_quantization_config(dir, json_pack("{s:s, s:s, s:[i,i]}", "quant_method", "fp8", "activation_scheme",
                                                   "dynamic", "weight_block_size", 128, 128)) == 0);
    g4_weights *a = load(orig, false), *b = load(dir, false);
    REQUIRE(a && b);
    CHECK(a->cfg.quant == G4_QUANT_MODELOPT_FP8_PB_WO);
    CHECK(b->cfg.quant == G4_QUANT_HF_FP8_BLOCK);
    /* the copy really is in the HF layout */
    CHECK(!st_model_find(b->ckpt, LM "layers.0.mlp.gate_proj.weight_scale"));
    const st_tensor *s = st_model_find(b->ckpt, LM "layers.0.mlp.gate_proj.weight_scale_inv");
    CHECK(s && s->ndim == 2 && s->shape[0] == 2 && s->shape[1] == 1);
    for (int l = 0; l < a->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const g4_matrix *ma = linear(&a->layers[l], i), *mb = linear(&b->layers[l], i);
            CHECKF(same_matrix_bytes(ma, mb), "layer %d %s", l, ma->name ? ma->name : "v");
            CHECK(!mb->data || mb->format == G4_MAT_FP8_BLOCK);
        }
    g4_weights_free(a);
    g4_weights_free(b);

    golden g;
    REQUIRE(load_golden(orig, &g) == 0);
    int va = 0, vb = 0;
    float *la = prefill(orig, false, &g, &va), *lb = prefill(dir, false, &g, &vb);
    REQUIRE(la && lb && va == vb);
    CHECKF(!memcmp(la, lb, sizeof(float) * g.T * va), "HF layout logits differ from the ModelOpt layout's");
    double r = worst_rel_err(lb, &g, vb);
    CHECKF(r < REL_TOL, "prefill relative error %.3g vs the golden", r);
    free(la);
    free(lb);
    free_golden(&g);
}

/* ============================================================ 2. BF16 quantized while loading */

static void test_quantize_bf16_at_load(void) {
    g4_weights *q = load(fixture("a_h96"), true), *ref = load(fixture("a_h96_fp8"), false);
    REQUIRE(q && ref);
    CHECK(q->embed.format == G4_MAT_BF16);
    for (int l = 0; l < q->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const g4_matrix *m = linear(&q->layers[l], i), *r = linear(&ref->layers[l], i);
            if (!r->data) { /* v on K==V layers */
                CHECK(!m->data);
                continue;
            }
            CHECKF(m->format == G4_MAT_FP8_BLOCK, "%s", m->name);
            CHECKF(same_matrix_bytes(m, r), "%s: codes or scales differ from the fp8 fixture", m->name);
        }
    g4_weights_free(q);
    g4_weights_free(ref);

    golden g;
    REQUIRE(load_golden(fixture("a_h96_fp8"), &g) == 0);
    int vq = 0, vr = 0;
    float *lq = prefill(fixture("a_h96"), true, &g, &vq), *lr = prefill(fixture("a_h96_fp8"), false, &g, &vr);
    REQUIRE(lq && lr && vq == vr);
    double r = worst_rel_err(lq, &g, vq);
    CHECKF(r < REL_TOL, "prefill relative error %.3g vs the fp8 golden", r);
    CHECKF(!memcmp(lq, lr, sizeof(float) * g.T * vq), "logits differ from the fp8 checkpoint's");
    free(lq);
    free(lr);
    free_golden(&g);
}

/* A 1-byte tensor first in the file: every BF16 tensor at an odd address.
 * Linears are copied to aligned memory, and quantizing at load reads the copy. */
static void test_odd_offsets(void) {
    static const uint8_t pad = 1;
    const new_tensor extra[] = {{"aaa_odd_pad", ST_U8, 1, {1}, &pad, NULL}};
    const char *dir = scratch_path("odd");
    REQUIRE(rewrite_ckpt(fixture("a_h96"), dir, NULL, NULL, extra, 1) == 0);
    g4_weights *w = load(dir, false), *wq = load(dir, true);
    g4_weights *ref = load(fixture("a_h96"), false), *refq = load(fixture("a_h96_fp8"), false);
    REQUIRE(w && wq && ref && refq);
    const st_tensor *up = st_model_find(w->ckpt, LM "layers.0.mlp.up_proj.weight");
    REQUIRE(up);
    CHECK((uintptr_t)up->data % 2 == 1); /* the fixture really is misaligned */
    for (int l = 0; l < w->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const g4_matrix *m = linear(&w->layers[l], i);
            CHECKF(!m->data || (uintptr_t)m->data % 2 == 0, "%s at an odd address", m->name);
            CHECKF(same_matrix_bytes(m, linear(&ref->layers[l], i)), "layer %d linear %d", l, i);
            CHECKF(same_matrix_bytes(linear(&wq->layers[l], i), linear(&refq->layers[l], i)), "layer %d linear %d", l,
                   i);
        }
    g4_weights_free(w);
    g4_weights_free(wq);
    g4_weights_free(ref);
    g4_weights_free(refq);
}

/* ============================================================ 3. NaN bytes */

typedef struct {
    const char *tensor;
    int n;
    int64_t index[3];
    uint8_t byte[3];
} nan_patch;

static const nan_patch nan_patches[] = {
    {LM "layers.0.self_attn.q_proj.weight", 3, {0, 777, 64 * 96 - 1}, {0x7f, 0xff, 0x7f}},
    {LM "layers.3.mlp.down_proj.weight", 2, {5, 96 * 144 - 1}, {0xff, 0xff}},
};

static void put_nan_bytes(const st_tensor *in, new_tensor *out, const void *ctx) {
    for (size_t p = 0; p < sizeof nan_patches / sizeof *nan_patches; p++) {
        if (strcmp(in->name, nan_patches[p].tensor)) continue;
        uint8_t *copy = malloc(st_nbytes(in));
        memcpy(copy, in->data, st_nbytes(in));
        for (int i = 0; i < nan_patches[p].n; i++) copy[nan_patches[p].index[i]] = nan_patches[p].byte[i];
        out->data = out->owned = copy;
    }
}

static void test_nan_bytes_repaired(void) {
    const char *dir = scratch_path("nan");
    REQUIRE(rewrite_ckpt(fixture("a_h96_fp8"), dir, put_nan_bytes, NULL, NULL, 0) == 0);
    char file[1024];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    size_t n_before, n_now;
    char *before = g4_read_file(file, &n_before);
    REQUIRE(before);

    g4_weights *ref = load(fixture("a_h96_fp8"), false), *w = load(dir, false);
    REQUIRE(ref && w);
    CHECK(ref->n_repairs == 0);
    CHECKF(w->n_repairs == 2, "%d repairs", w->n_repairs);
    const g4_matrix *m[2] = {&w->layers[0].q, &w->layers[3].down}, *r[2] = {&ref->layers[0].q, &ref->layers[3].down};
    for (int p = 0; p < 2; p++) {
        const nan_patch *np = &nan_patches[p];
        int found = -1;
        for (int i = 0; i < w->n_repairs; i++)
            if (!strcmp(w->repairs[i].name, np->tensor)) found = i;
        CHECKF(found >= 0 && w->repairs[found].count == (uint64_t)np->n, "%s not listed with %d", np->tensor, np->n);
        const uint8_t *codes = m[p]->data, *orig = r[p]->data;
        size_t numel = (size_t)m[p]->rows * m[p]->cols, differ = 0;
        for (int i = 0; i < np->n; i++)
            CHECKF(codes[np->index[i]] == (np->byte[i] & 0x80 ? 0xfe : 0x7e), "%s[%lld] = 0x%02x", np->tensor,
                   (long long)np->index[i], codes[np->index[i]]);
        for (size_t i = 0; i < numel; i++) differ += codes[i] != orig[i];
        CHECKF(differ <= (size_t)np->n, "%s: %zu bytes changed", np->tensor, differ);
    }
    char *now = g4_read_file(file, &n_now); /* while the repaired mapping is alive */
    CHECK(now && n_now == n_before && !memcmp(now, before, n_before));
    free(now);
    g4_weights_free(w);
    g4_weights_free(ref);

    char cmd[1200], out[16384] = "";
    snprintf(cmd, sizeof cmd, "build/g4 inspect '%s' 2>&1", dir);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    CHECK(pclose(p) == 0);
    CHECKF(strstr(out, "repaired 3 NaN bytes to +-448 in " LM "layers.0.self_attn.q_proj.weight"), "%s", out);
    CHECKF(strstr(out, "repaired 2 NaN bytes to +-448 in " LM "layers.3.mlp.down_proj.weight"), "%s", out);
    CHECKF(strstr(out, "NaN bytes      5 repaired"), "%s", out);
    now = g4_read_file(file, &n_now);
    CHECK(now && n_now == n_before && !memcmp(now, before, n_before));
    free(now);
    free(before);
}

/* ============================================================ 4. malformed checkpoints */

static void drop_tensor(const st_tensor *in, new_tensor *out, const void *name) {
    if (!strcmp(in->name, name)) out->data = NULL;
}

static void transpose_shape(const st_tensor *in, new_tensor *out, const void *name) {
    if (strcmp(in->name, name)) return;
    out->shape[0] = in->shape[1], out->shape[1] = in->shape[0]; /* same bytes, shape against config.json */
}

static void store_as_f32(const st_tensor *in, new_tensor *out, const void *name) {
    if (strcmp(in->name, name)) return;
    float *v = malloc(sizeof(float) * st_numel(in));
    for (uint64_t i = 0; i < st_numel(in); i++) v[i] = bf16_at(in, i);
    out->dtype = ST_F32;
    out->data = out->owned = v;
}

/* [2,1,1,1] -> [1,1,2,1]: the grid of the transposed weight. */
static void swap_scale_grid(const st_tensor *in, new_tensor *out, const void *name) {
    if (strcmp(in->name, name)) return;
    out->shape[0] = in->shape[2], out->shape[2] = in->shape[0];
}

/* Rewrites SRC into scratch/NAME with one edit; the load must fail naming the file (or dir) and tensor. */
static void check_broken(const char *src, const char *name, tensor_edit edit, const char *tensor, const char *what,
                         bool names_file) {
    const char *dir = scratch_path(name);
    REQUIRE(rewrite_ckpt(fixture(src), dir, edit, tensor, NULL, 0) == 0);
    char file[1024];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    const char *fragments[3] = {names_file ? file : dir, tensor, what};
    expect_load_error(dir, fragments, 3);
}

static void test_missing_tensor(void) {
    check_broken("a_h96_fp8", "missing", drop_tensor, LM "layers.1.self_attn.o_proj.weight", "missing", false);
}

static void test_shape_disagrees_with_config(void) {
    check_broken("a_h96_fp8", "shape", transpose_shape, LM "layers.2.self_attn.q_proj.weight", "[96,128]", true);
}

static void test_f32_linear_weight(void) {
    check_broken("a_h96", "f32", store_as_f32, LM "layers.0.mlp.up_proj.weight", "F32", true);
}

static void test_fp8_weight_without_scale(void) {
    check_broken("a_h96_fp8", "noscale", drop_tensor, LM "layers.4.mlp.gate_proj.weight_scale", "has no", true);
    /* the message names the weight too */
    g4_err err;
    CHECK(!g4_weights_load(scratch_path("noscale"), NULL, &err) &&
          strstr(err.msg, "'" LM "layers.4.mlp.gate_proj.weight'"));
}

static void test_scale_wrong_block_grid(void) {
    check_broken("a_h96_fp8", "grid", swap_scale_grid, LM "layers.0.mlp.gate_proj.weight_scale", "[1,1,2,1]", true);
}

/* Older ModelOpt exports: hf_quant_config.json, no quantization_config in config.json. */
static void test_hf_quant_config_alone(void) {
    const char *dir = scratch_path("hfq_only");
    REQUIRE(rewrite_ckpt(fixture("a_h96_fp8"), dir, NULL, NULL, NULL, 0) == 0);
    REQUIRE(set_quantization_config(dir, NULL) == 0);
    g4_weights *w = load(dir, false);
    REQUIRE(w);
    CHECK(w->cfg.quant == G4_QUANT_MODELOPT_FP8_PB_WO);
    CHECK(w->cfg.kv_cache_fp8);
    CHECK(strstr(w->cfg.quant_producer, "modelopt"));
    g4_weights_free(w);
}

static void test_unsupported_quant_algo(void) {
    const char *dir = scratch_path("nvfp4");
    REQUIRE(rewrite_ckpt(fixture("a_h96_fp8"), dir, NULL, NULL, NULL, 0) == 0);
    REQUIRE(set_quantization_config(dir, json_pack("{s:s, s:s}", "quant_method", "modelopt", "quant_algo", "NVFP4")) ==
            0);
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    const char *fragments[3] = {cfg, "quant_algo", "\"NVFP4\" is not supported"};
    expect_load_error(dir, fragments, 3);
}

/* ============================================================ 5. KV-cache scales */

static void test_kv_scales(void) {
    static float vals[] = {0.5f, 0.25f, 0.75f, 0.0f, -1.0f, NAN, 2.0f};
    /* F32 scalars as ModelOpt writes them (0-d); nd 1 gives shape [1] */
#define SCALE(layer, kv, idx, nd) \
    {LM "layers." #layer ".self_attn." #kv "_proj." #kv "_scale", ST_F32, nd, {1}, &vals[idx], NULL}
    const new_tensor extra[] = {
        SCALE(0, k, 0, 0), SCALE(0, v, 1, 0), /* both valid: used */
        SCALE(1, k, 2, 0),                    /* k only: copied to v */
        SCALE(2, k, 3, 0), SCALE(2, v, 4, 0), /* zero, negative: 1.0 */
        SCALE(3, k, 5, 0),                    /* NaN, no v: 1.0 */
        SCALE(4, v, 6, 1),                    /* v only, shape [1]: copied to k */
    };
#undef SCALE
    const char *dir = scratch_path("kv_scales");
    REQUIRE(rewrite_ckpt(fixture("a_h96_fp8"), dir, NULL, NULL, extra, sizeof extra / sizeof *extra) == 0);
    g4_weights *w = load(dir, false), *plain = load(fixture("a_h96_fp8"), false);
    REQUIRE(w && plain);
    const float want[5][2] = {{0.5f, 0.25f}, {0.75f, 0.75f}, {1, 1}, {1, 1}, {2, 2}};
    for (int l = 0; l < 5; l++) {
        CHECKF(w->layers[l].k_scale == want[l][0] && w->layers[l].v_scale == want[l][1],
               "layer %d: k_scale %g v_scale %g, want %g %g", l, w->layers[l].k_scale, w->layers[l].v_scale,
               want[l][0], want[l][1]);
        CHECK(plain->layers[l].k_scale == 1.0f && plain->layers[l].v_scale == 1.0f);
    }
    g4_weights_free(w);
    g4_weights_free(plain);
}

/* ============================================================ 6. synthetic checkpoints */

static void test_synth_12b_manifest(void) {
    g4_config cfg;
    g4_err err;
    REQUIRE(g4_synth_preset("12b", &cfg, &err) == 0);
    g4_manifest_entry *m;
    int n = g4_manifest_build(&cfg, G4_MM_NAMES_TRANSFORMERS, &m);
    CHECKF(n == 677, "%d tensors", n);
    int sliding = 0, full = 0, linears = 0;
    for (int l = 0; l < cfg.n_layers; l++) cfg.layer[l].kind == G4_ATTN_FULL ? full++ : sliding++;
    for (int i = 0; i < n; i++) linears += m[i].role == G4_T_LINEAR;
    CHECK(cfg.n_layers == 48 && sliding == 40 && full == 8);
    CHECKF(linears == 40 * 7 + 8 * 6, "%d linears", linears); /* full layers: K==V, no v_proj */
    free(m);
}

static void test_synth_bf16_values(void) {
    const char *dir = tiny(G4_SYNTH_BF16);
    REQUIRE(dir);
    g4_err err;
    st_model *m = st_model_open(dir, &err);
    REQUIRE(m);
    int scalars = 0, norms = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const st_tensor *t = m->tensors[i];
        CHECKF(t->dtype == ST_BF16, "%s is %s", t->name, st_dtype_name(t->dtype));
        if (t->dtype != ST_BF16) continue;
        uint64_t zeros = 0, n = st_numel(t);
        const uint16_t *h = t->data;
        for (uint64_t k = 0; k < n; k++) zeros += (h[k] & 0x7fff) == 0;
        CHECKF(zeros == 0, "%s: %llu zeros", t->name, (unsigned long long)zeros);
        if (ends_with(t->name, "layer_scalar")) {
            scalars++;
            CHECKF(bf16_at(t, 0) != 1.0f, "%s = 1", t->name);
        }
        if (!strncmp(t->name, LM, strlen(LM)) && ends_with(t->name, "norm.weight")) {
            norms++;
            float lo = bf16_at(t, 0), hi = lo;
            for (uint64_t k = 1; k < n; k++) lo = fminf(lo, bf16_at(t, k)), hi = fmaxf(hi, bf16_at(t, k));
            CHECKF(hi > lo, "%s: every value is %g", t->name, lo);
        }
    }
    CHECK(scalars == 6 && norms == 6 * 6 + 1);
    st_model_close(m);
}

static void test_synth_fp8_block_scales_vary(void) {
    const char *dir = tiny(G4_SYNTH_FP8);
    REQUIRE(dir);
    g4_err err;
    st_model *m = st_model_open(dir, &err);
    REQUIRE(m);
    int checked = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const st_tensor *t = m->tensors[i];
        if (!ends_with(t->name, "mlp.gate_proj.weight_scale") && !ends_with(t->name, "mlp.down_proj.weight_scale"))
            continue;
        float lo = INFINITY, hi = 0;
        for (uint64_t k = 0; k < st_numel(t); k++) {
            float s; /* F32 after odd-sized FP8 tensors: not 4-byte aligned */
            memcpy(&s, (const char *)t->data + 4 * k, 4);
            lo = fminf(lo, s), hi = fmaxf(hi, s);
        }
        CHECKF(lo > 0 && hi / lo > 2.0f, "%s: block scales %g..%g", t->name, lo, hi);
        checked++;
    }
    CHECK(checked == 12);
    st_model_close(m);
}

static void test_synth_fp8_loads_as_modelopt(void) {
    const char *dir = tiny(G4_SYNTH_FP8);
    REQUIRE(dir);
    g4_weights *w = load(dir, false);
    REQUIRE(w);
    CHECK(w->cfg.quant == G4_QUANT_MODELOPT_FP8_PB_WO && w->cfg.kv_cache_fp8);
    for (int l = 0; l < w->cfg.n_layers; l++)
        for (int i = 0; i < 7; i++) {
            const g4_matrix *mat = linear(&w->layers[l], i);
            CHECK(!mat->data || mat->format == G4_MAT_FP8_BLOCK);
        }
    CHECK(st_model_find(w->ckpt, "model.embed_vision.patch_dense.weight"));
    CHECK(st_model_find(w->ckpt, "model.embed_vision.multimodal_embedder.embedding_projection.weight"));
    CHECK(st_model_find(w->ckpt, "model.embed_audio.embedding_projection.weight"));
    CHECK(!st_model_find(w->ckpt, "model.vision_embedder.patch_dense.weight"));
    g4_weights_free(w);
}

TEST_MAIN("weights", TEST_CASE(test_hf_fp8_block_layout), TEST_CASE(test_quantize_bf16_at_load),
          TEST_CASE(test_odd_offsets), TEST_CASE(test_nan_bytes_repaired), TEST_CASE(test_missing_tensor),
          TEST_CASE(test_shape_disagrees_with_config), TEST_CASE(test_f32_linear_weight),
          TEST_CASE(test_fp8_weight_without_scale), TEST_CASE(test_scale_wrong_block_grid),
          TEST_CASE(test_hf_quant_config_alone), TEST_CASE(test_unsupported_quant_algo), TEST_CASE(test_kv_scales),
          TEST_CASE(test_synth_12b_manifest), TEST_CASE(test_synth_bf16_values),
          TEST_CASE(test_synth_fp8_block_scales_vary), TEST_CASE(test_synth_fp8_loads_as_modelopt))
