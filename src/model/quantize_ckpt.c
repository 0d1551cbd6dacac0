/* BF16 checkpoint -> fp8_pb_wo checkpoint (see quantize_ckpt.h). */
#include "model/quantize_ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/config.h"
#include "model/manifest.h"
#include "model/modelopt.h"
#include "model/safetensors.h"
#include "util/progress.h"

#define SHARD_BYTES 5000000000ull

typedef struct {
    const st_tensor *src;
    char out_name[160];
    bool quantize;
} plan_item;

static bool is_linear(const g4_manifest_entry *m, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (m[i].role == G4_T_LINEAR && !strcmp(m[i].name, name)) return true;
    return false;
}

/* What happens to each input tensor: quantized linear, or copied (multimodal
 * names take the transformers spelling, as ModelOpt's export does). */
static int make_plan(const st_model *in, const g4_config *cfg, plan_item **out, g4_err *err) {
    g4_manifest_entry *m;
    int nm = g4_manifest_build(cfg, G4_MM_NAMES_ORIGINAL, &m);
    plan_item *plan = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *plan);
    int rc = 0;
    for (int i = 0; i < in->n_tensors && !rc; i++) {
        const st_tensor *t = in->tensors[i];
        plan[i].src = t;
        plan[i].quantize = is_linear(m, nm, t->name);
        if (g4_mm_name_to_transformers(t->name, plan[i].out_name, sizeof plan[i].out_name))
            snprintf(plan[i].out_name, sizeof plan[i].out_name, "%s", t->name);
        if (plan[i].quantize && (t->dtype != ST_BF16 || t->ndim != 2))
            rc = g4_errorf(err, "%s: tensor '%s' is %s with %d dims; the quantizer takes 2-D BF16 weights",
                           t->file_path, t->name, st_dtype_name(t->dtype), t->ndim);
    }
    for (int i = 0; i < nm && !rc; i++)
        if (!st_model_find(in, m[i].name) && m[i].role != G4_T_MM)
            rc = g4_errorf(err, "%s: tensor '%s' is missing", in->dir, m[i].name);
    free(m);
    *out = plan;
    return rc;
}

static int declare(st_writer *w, const plan_item *p, int n, g4_err *err) {
    for (int i = 0; i < n; i++) {
        const st_tensor *t = p[i].src;
        if (!p[i].quantize) {
            if (st_writer_add(w, p[i].out_name, t->dtype, t->ndim, t->shape, err)) return -1;
            continue;
        }
        if (g4_modelopt_declare_linear(w, p[i].out_name, t->shape, err)) return -1;
    }
    return 0;
}

static int write_item(st_writer *w, const plan_item *p, g4_calib calib, g4_err *err) {
    const st_tensor *t = p->src;
    if (!p->quantize) return st_writer_write(w, p->out_name, t->data, err);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    const g4_bf16 *src = t->data;
    g4_bf16 *aligned = NULL;
    if ((uintptr_t)src % 2) { /* odd offset in the file: copy once */
        aligned = malloc(st_nbytes(t));
        memcpy(aligned, src, st_nbytes(t));
        src = aligned;
    }
    int rc = g4_modelopt_write_linear(w, p->out_name, src, rows, cols, calib, err);
    free(aligned);
    return rc;
}

static int copy_file(const char *from, const char *to, g4_err *err) {
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    int rc = in && out ? 0 : g4_errorf(err, "cannot copy %s to %s: %s", from, to, strerror(errno));
    char buf[1 << 16];
    size_t k;
    while (!rc && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) rc = g4_errorf(err, "%s: write failed", to);
    if (in) fclose(in);
    if (out && fclose(out) && !rc) rc = g4_errorf(err, "%s: write failed", to);
    return rc;
}

/* Tokenizer, chat template, generation config, processor files: copied as is. */
static int copy_side_files(const char *in_dir, const char *out_dir, g4_err *err) {
    DIR *d = opendir(in_dir);
    if (!d) return g4_errorf(err, "%s: cannot list: %s", in_dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        if (n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "hf_quant_config.json") ||
            !strcmp(n, "model.safetensors.index.json") ||
            (len > 12 && !strcmp(n + len - 12, ".safetensors")))
            continue;
        char from[4096], to[4096];
        snprintf(from, sizeof from, "%s/%s", in_dir, n);
        snprintf(to, sizeof to, "%s/%s", out_dir, n);
        struct stat st;
        if (!stat(from, &st) && S_ISREG(st.st_mode)) rc = copy_file(from, to, err);
    }
    closedir(d);
    return rc;
}

static int write_config(const char *in_dir, const char *out_dir, const g4_config *cfg, bool kv_fp8, g4_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    json_error_t jerr;
    json_t *config = json_load_file(path, JSON_PRESERVE_ORDER, &jerr);
    if (!config) return g4_errorf(err, "%s: %s", path, jerr.text);
    int rc = g4_modelopt_write_metadata(out_dir, config, kv_fp8, cfg->vision_patch_dim || cfg->audio_dim, err);
    snprintf(path, sizeof path, "%s/config.json", out_dir);
    if (!rc) rc = g4_write_json_file(path, config, err);
    json_decref(config);
    return rc;
}

static int run(const st_model *in, const g4_config *cfg, const char *in_dir, const char *out_dir,
               const g4_quantize_opts *o, g4_err *err) {
    plan_item *plan = NULL;
    st_writer *w = NULL;
    int rc = make_plan(in, cfg, &plan, err);
    if (!rc && !(w = st_writer_create(out_dir, err))) rc = -1;
    if (!rc) rc = declare(w, plan, in->n_tensors, err) || st_writer_begin(w, SHARD_BYTES, err);
    g4_progress pr;
    g4_progress_start(&pr);
    for (int i = 0; i < in->n_tensors && !rc; i++) {
        rc = write_item(w, &plan[i], o->calib, err);
        if (o->progress) g4_progress_step(&pr, i + 1, in->n_tensors, plan[i].out_name);
    }
    if (o->progress && !rc) g4_progress_end(&pr, in->n_tensors);
    if (!rc) rc = st_writer_finish(w, err);
    if (!rc) rc = write_config(in_dir, out_dir, cfg, o->kv_cache_fp8, err) || copy_side_files(in_dir, out_dir, err);
    st_writer_free(w);
    free(plan);
    return rc;
}

int g4_quantize_checkpoint(const char *in_dir, const char *out_dir, const g4_quantize_opts *o, g4_err *err) {
    g4_config cfg;
    if (g4_config_load(in_dir, &cfg, err)) return -1;
    if (cfg.quant != G4_QUANT_NONE)
        return g4_errorf(err, "%s: the checkpoint is already quantized; g4 quantize takes a BF16 checkpoint", in_dir);
    st_model *in = st_model_open(in_dir, err);
    if (!in) return -1;
    int rc = run(in, &cfg, in_dir, out_dir, o, err);
    st_model_close(in);
    return rc;
}
