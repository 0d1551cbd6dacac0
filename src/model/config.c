/* config.json -> g4_config (see config.h). */
#include "model/config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/file.h"

/* ------------------------------------------------------------ field access */

static int get_int(const json_t *obj, const char *key, int *out, const char *where, g4_err *err) {
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        return g4_errorf(err, "%s: \"%s\" %s", where, key, v ? "is not an integer" : "is missing");
    json_int_t x = json_integer_value(v);
    if (x < 0 || x > 1 << 30) return g4_errorf(err, "%s: \"%s\" = %lld is out of range", where, key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_positive(const json_t *obj, const char *key, int *out, const char *where, g4_err *err) {
    if (get_int(obj, key, out, where, err)) return -1;
    return *out > 0 ? 0 : g4_errorf(err, "%s: \"%s\" must be positive", where, key);
}

static void opt_int(const json_t *obj, const char *key, int *out, int fallback) {
    const json_t *v = json_object_get(obj, key);
    *out = json_is_integer(v) ? (int)json_integer_value(v) : fallback;
}

static void opt_float(const json_t *obj, const char *key, float *out, float fallback) {
    const json_t *v = json_object_get(obj, key);
    *out = json_is_number(v) ? (float)json_number_value(v) : fallback;
}

static void opt_bool(const json_t *obj, const char *key, bool *out, bool fallback) {
    const json_t *v = json_object_get(obj, key);
    *out = json_is_boolean(v) ? json_is_true(v) : fallback;
}

static void opt_string(const json_t *obj, const char *key, char *out, size_t size) {
    const json_t *v = json_object_get(obj, key);
    snprintf(out, size, "%s", json_is_string(v) ? json_string_value(v) : "");
}

/* eos_token_id may be an int, a list of ints, or null. */
static int read_eos(const json_t *v, g4_config *cfg, const char *where, g4_err *err) {
    if (!v || json_is_null(v)) return 0;
    cfg->n_eos = 0;
    if (json_is_integer(v)) {
        cfg->eos_ids[cfg->n_eos++] = (int)json_integer_value(v);
        return 0;
    }
    if (!json_is_array(v)) return g4_errorf(err, "%s: \"eos_token_id\" must be an integer or a list", where);
    size_t i;
    json_t *id;
    json_array_foreach(v, i, id) {
        if (!json_is_integer(id)) return g4_errorf(err, "%s: eos_token_id[%zu] is not an integer", where, i);
        if (cfg->n_eos < G4_MAX_EOS) cfg->eos_ids[cfg->n_eos++] = (int)json_integer_value(id);
    }
    return 0;
}

/* ------------------------------------------------------------ layer geometry */

static int read_layer_kinds(const json_t *text, g4_config *cfg, const char *where, g4_err *err) {
    const json_t *types = json_object_get(text, "layer_types");
    if (!types) {
        /* HF's default pattern: five sliding layers, then one full. */
        for (int l = 0; l < cfg->n_layers; l++)
            cfg->layer[l].kind = (l + 1) % 6 == 0 ? G4_ATTN_FULL : G4_ATTN_SLIDING;
        return 0;
    }
    if (!json_is_array(types) || (int)json_array_size(types) != cfg->n_layers)
        return g4_errorf(err, "%s: \"layer_types\" must list num_hidden_layers = %d entries", where, cfg->n_layers);
    for (int l = 0; l < cfg->n_layers; l++) {
        const char *t = json_string_value(json_array_get(types, l));
        if (t && !strcmp(t, "sliding_attention")) cfg->layer[l].kind = G4_ATTN_SLIDING;
        else if (t && !strcmp(t, "full_attention")) cfg->layer[l].kind = G4_ATTN_FULL;
        else return g4_errorf(err, "%s: layer_types[%d] = \"%s\" is not sliding_attention or full_attention",
                              where, l, t ? t : "(not a string)");
    }
    return 0;
}

static const char *kind_name(g4_attn_kind k) { return k == G4_ATTN_FULL ? "full_attention" : "sliding_attention"; }

/* per_layer_config (written by transformers 5.x save_pretrained): keys are
 * layer indices, sometimes zero-padded ("05"), or a layer type name. */
static int apply_per_layer_config(const json_t *plc, g4_config *cfg, const char *where, g4_err *err) {
    if (!plc || json_is_null(plc)) return 0;
    if (!json_is_object(plc)) return g4_errorf(err, "%s: \"per_layer_config\" is not an object", where);
    const char *key;
    json_t *entry;
    json_object_foreach((json_t *)plc, key, entry) {
        char *end;
        long idx = strtol(key, &end, 10);
        bool by_index = *key && !*end;
        if (by_index && (idx < 0 || idx >= cfg->n_layers))
            return g4_errorf(err, "%s: per_layer_config key \"%s\" is not a layer index", where, key);
        for (int l = 0; l < cfg->n_layers; l++) {
            if (by_index ? l != idx : strcmp(key, kind_name(cfg->layer[l].kind))) continue;
            opt_int(entry, "head_dim", &cfg->layer[l].head_dim, cfg->layer[l].head_dim);
            opt_int(entry, "num_key_value_heads", &cfg->layer[l].n_kv_heads, cfg->layer[l].n_kv_heads);
        }
    }
    return 0;
}

static int read_head_geometry(const json_t *text, g4_config *cfg, const char *where, g4_err *err) {
    int head_dim, n_kv;
    if (get_positive(text, "head_dim", &head_dim, where, err) ||
        get_positive(text, "num_key_value_heads", &n_kv, where, err))
        return -1;
    bool k_eq_v;
    opt_bool(text, "attention_k_eq_v", &k_eq_v, false);
    int global_dim, global_kv;
    opt_int(text, "global_head_dim", &global_dim, head_dim);
    opt_int(text, "num_global_key_value_heads", &global_kv, n_kv);
    if (!k_eq_v) global_kv = n_kv; /* HF applies the global KV-head count only with K==V */
    for (int l = 0; l < cfg->n_layers; l++) {
        g4_layer_geom *g = &cfg->layer[l];
        bool full = g->kind == G4_ATTN_FULL;
        g->head_dim = full ? global_dim : head_dim;
        g->n_kv_heads = full ? global_kv : n_kv;
        g->k_eq_v = full && k_eq_v;
    }
    if (apply_per_layer_config(json_object_get(text, "per_layer_config"), cfg, where, err)) return -1;
    for (int l = 0; l < cfg->n_layers; l++) {
        g4_layer_geom *g = &cfg->layer[l];
        if (g->head_dim <= 0 || g->head_dim % 2 || g->n_kv_heads <= 0 || cfg->n_heads % g->n_kv_heads)
            return g4_errorf(err, "%s: layer %d: head_dim %d / %d KV heads do not fit %d query heads", where, l,
                             g->head_dim, g->n_kv_heads, cfg->n_heads);
    }
    return 0;
}

/* rope_parameters: {"sliding_attention": {...}, "full_attention": {...}} or
 * one dict for every layer; legacy configs carry rope_theta at top level. */
static int read_rope(const json_t *text, g4_config *cfg, const char *where, g4_err *err) {
    const json_t *rp = json_object_get(text, "rope_parameters");
    for (int l = 0; l < cfg->n_layers; l++) {
        g4_layer_geom *g = &cfg->layer[l];
        const json_t *p = rp;
        if (json_is_object(rp) && !json_object_get(rp, "rope_type") && !json_object_get(rp, "rope_theta"))
            p = json_object_get(rp, kind_name(g->kind));
        char type[32] = "default";
        if (json_is_object(p)) opt_string(p, "rope_type", type, sizeof type);
        if (!type[0]) snprintf(type, sizeof type, "default");
        opt_float(json_is_object(p) ? p : text, "rope_theta", &g->rope_theta, 10000.0f);
        float partial = 1.0f, factor = 1.0f;
        if (json_is_object(p)) {
            opt_float(p, "partial_rotary_factor", &partial, 1.0f);
            opt_float(p, "factor", &factor, 1.0f);
        }
        if (factor != 1.0f)
            return g4_errorf(err, "%s: layer %d: rope \"factor\" %g is not supported (only 1.0)", where, l, factor);
        if (!strcmp(type, "default")) {
            if (partial != 1.0f)
                return g4_errorf(err, "%s: layer %d: default RoPE with partial_rotary_factor %g is not supported",
                                 where, l, partial);
            g->rope = G4_ROPE_DEFAULT;
            g->rope_pairs = g->head_dim / 2;
        } else if (!strcmp(type, "proportional")) {
            g->rope = G4_ROPE_PROPORTIONAL;
            g->rope_pairs = (int)floorf(partial * g->head_dim / 2.0f);
        } else {
            return g4_errorf(err, "%s: layer %d: rope_type \"%s\" is not supported", where, l, type);
        }
        g->window = g->kind == G4_ATTN_SLIDING ? cfg->sliding_window : 0;
    }
    return 0;
}

/* ------------------------------------------------------------ sections */

static int read_text_config(const json_t *text, g4_config *cfg, const char *where, g4_err *err) {
    opt_string(text, "model_type", cfg->text_model_type, sizeof cfg->text_model_type);
    if (get_positive(text, "vocab_size", &cfg->vocab_size, where, err) ||
        get_positive(text, "hidden_size", &cfg->hidden, where, err) ||
        get_positive(text, "intermediate_size", &cfg->ffn, where, err) ||
        get_positive(text, "num_hidden_layers", &cfg->n_layers, where, err) ||
        get_positive(text, "num_attention_heads", &cfg->n_heads, where, err))
        return -1;
    if (cfg->n_layers > G4_MAX_LAYERS)
        return g4_errorf(err, "%s: num_hidden_layers %d exceeds %d", where, cfg->n_layers, G4_MAX_LAYERS);
    const char *act = json_string_value(json_object_get(text, "hidden_activation"));
    if (act && strcmp(act, "gelu_pytorch_tanh"))
        return g4_errorf(err, "%s: hidden_activation \"%s\" is not supported (gelu_pytorch_tanh)", where, act);
    bool moe, ple_dummy;
    opt_bool(text, "enable_moe_block", &moe, false);
    if (moe) return g4_errorf(err, "%s: enable_moe_block is not supported (the 12B is dense)", where);
    int ple;
    opt_int(text, "hidden_size_per_layer_input", &ple, 0);
    if (ple) return g4_errorf(err, "%s: per-layer inputs (hidden_size_per_layer_input) are not supported", where);
    opt_bool(text, "use_double_wide_mlp", &ple_dummy, false);
    if (ple_dummy) return g4_errorf(err, "%s: use_double_wide_mlp is not supported", where);
    opt_float(text, "rms_norm_eps", &cfg->rms_eps, 1e-6f);
    const json_t *softcap = json_object_get(text, "final_logit_softcapping");
    cfg->final_softcap = json_is_number(softcap) ? (float)json_number_value(softcap) : 0.0f;
    opt_int(text, "sliding_window", &cfg->sliding_window, 1024);
    opt_int(text, "max_position_embeddings", &cfg->max_position, 131072);
    opt_int(text, "num_kv_shared_layers", &cfg->n_kv_shared_layers, 0);
    opt_int(text, "bos_token_id", &cfg->bos_id, 2);
    opt_int(text, "pad_token_id", &cfg->pad_id, 0);
    if (read_eos(json_object_get(text, "eos_token_id"), cfg, where, err)) return -1;
    if (read_layer_kinds(text, cfg, where, err) || read_head_geometry(text, cfg, where, err) ||
        read_rope(text, cfg, where, err))
        return -1;
    return 0;
}

static void read_token_ids(const json_t *root, g4_config *cfg) {
    opt_int(root, "image_token_id", &cfg->image_token_id, 258880);
    opt_int(root, "audio_token_id", &cfg->audio_token_id, 258881);
    opt_int(root, "video_token_id", &cfg->video_token_id, 258884);
    opt_int(root, "boi_token_id", &cfg->boi_token_id, 255999);
    opt_int(root, "eoi_token_id", &cfg->eoi_token_id, 258882);
    opt_int(root, "boa_token_id", &cfg->boa_token_id, 256000);
    opt_int(root, "eoa_token_index", &cfg->eoa_token_id, 258883);
    opt_int(root, "eoa_token_id", &cfg->eoa_token_id, cfg->eoa_token_id);
}

static void read_multimodal(const json_t *root, g4_config *cfg) {
    const json_t *vision = json_object_get(root, "vision_config");
    if (json_is_object(vision)) {
        int patch;
        opt_int(vision, "model_patch_size", &patch, 48);
        cfg->vision_patch_dim = patch * patch * 3;
        opt_int(vision, "mm_posemb_size", &cfg->vision_posemb, 1120);
    }
    const json_t *audio = json_object_get(root, "audio_config");
    if (json_is_object(audio)) opt_int(audio, "audio_embed_dim", &cfg->audio_dim, 640);
}

static bool str_ieq(const json_t *v, const char *s) { return json_is_string(v) && !strcasecmp(json_string_value(v), s); }

/* quantization_config in config.json: ModelOpt fp8_pb_wo, or HF fine-grained FP8. */
static int read_quantization(const json_t *q, g4_config *cfg, const char *where, g4_err *err) {
    cfg->quant_block[0] = cfg->quant_block[1] = 128;
    if (!q || json_is_null(q)) return 0;
    const json_t *method = json_object_get(q, "quant_method");
    const json_t *algo = json_object_get(q, "quant_algo");
    if (str_ieq(method, "modelopt")) {
        if (!str_ieq(algo, "fp8_pb_wo"))
            return g4_errorf(err, "%s: quantization_config.quant_algo \"%s\" is not supported (fp8_pb_wo)", where,
                             json_is_string(algo) ? json_string_value(algo) : "(missing)");
        cfg->quant = G4_QUANT_MODELOPT_FP8_PB_WO;
        const json_t *kv = json_object_get(q, "kv_cache_scheme");
        const json_t *kv_algo = json_object_get(q, "kv_cache_quant_algo");
        if (json_is_object(kv) && str_ieq(json_object_get(kv, "type"), "float") &&
            json_integer_value(json_object_get(kv, "num_bits")) == 8)
            cfg->kv_cache_fp8 = true;
        if (str_ieq(kv_algo, "fp8")) cfg->kv_cache_fp8 = true;
        const json_t *producer = json_object_get(q, "producer");
        if (json_is_object(producer))
            snprintf(cfg->quant_producer, sizeof cfg->quant_producer, "%s %s",
                     json_string_value(json_object_get(producer, "name")) ?: "?",
                     json_string_value(json_object_get(producer, "version")) ?: "?");
        return 0;
    }
    if (str_ieq(method, "fp8")) {
        const json_t *bs = json_object_get(q, "weight_block_size");
        if (!json_is_array(bs) || json_array_size(bs) != 2 ||
            json_integer_value(json_array_get(bs, 0)) != 128 || json_integer_value(json_array_get(bs, 1)) != 128)
            return g4_errorf(err, "%s: fp8 quantization_config needs weight_block_size [128, 128]", where);
        cfg->quant = G4_QUANT_HF_FP8_BLOCK;
        return 0;
    }
    return g4_errorf(err, "%s: quantization_config.quant_method \"%s\" is not supported (modelopt fp8_pb_wo, fp8)",
                     where, json_is_string(method) ? json_string_value(method) : "(missing)");
}

int g4_config_parse(const char *json_text, const char *where, g4_config *cfg, g4_err *err) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!root) return g4_errorf(err, "%s: not valid JSON (%s, line %d)", where, jerr.text, jerr.line);
    int rc = 0;
    opt_string(root, "model_type", cfg->model_type, sizeof cfg->model_type);
    if (strcmp(cfg->model_type, "gemma4_unified") && strcmp(cfg->model_type, "gemma4_unified_assistant") &&
        strcmp(cfg->model_type, "gemma4_unified_text"))
        rc = g4_errorf(err, "%s: model_type \"%s\" is not supported (gemma4_unified, gemma4_unified_assistant)",
                       where, cfg->model_type);
    const json_t *text = json_object_get(root, "text_config");
    if (!rc && !json_is_object(text)) text = root; /* a bare text config */
    if (!rc) rc = read_text_config(text, cfg, where, err);
    if (!rc) rc = read_eos(json_object_get(root, "eos_token_id"), cfg, where, err);
    if (!rc) {
        read_token_ids(root, cfg);
        read_multimodal(root, cfg);
        opt_bool(root, "tie_word_embeddings", &cfg->tie_embeddings, true);
        opt_int(root, "backbone_hidden_size", &cfg->backbone_hidden, 0);
        rc = read_quantization(json_object_get(root, "quantization_config"), cfg, where, err);
    }
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------ side files */

/* Optional DIR/NAME: *root stays NULL when the file is absent. */
static int load_optional_json(const char *dir, const char *name, char *path, size_t size, json_t **root, g4_err *err) {
    snprintf(path, size, "%s/%s", dir, name);
    *root = NULL;
    if (access(path, F_OK)) return 0;
    json_error_t jerr;
    if (!(*root = json_load_file(path, 0, &jerr)))
        return g4_errorf(err, "%s: not valid JSON (%s, line %d)", path, jerr.text, jerr.line);
    return 0;
}

static int read_generation_config(const char *dir, g4_config *cfg, g4_err *err) {
    char path[4096];
    json_t *gen;
    if (load_optional_json(dir, "generation_config.json", path, sizeof path, &gen, err)) return -1;
    if (!gen) return 0;
    int rc = read_eos(json_object_get(gen, "eos_token_id"), cfg, path, err);
    json_decref(gen);
    return rc;
}

/* hf_quant_config.json alone (older ModelOpt exports) also marks the format. */
static int read_hf_quant_config(const char *dir, g4_config *cfg, g4_err *err) {
    char path[4096];
    json_t *root;
    if (load_optional_json(dir, "hf_quant_config.json", path, sizeof path, &root, err)) return -1;
    if (!root) return 0;
    const json_t *q = json_object_get(root, "quantization");
    int rc = 0;
    if (json_is_object(q) && cfg->quant == G4_QUANT_NONE) {
        json_t *as_config = json_deep_copy(q);
        json_object_set_new(as_config, "quant_method", json_string("modelopt"));
        json_object_set(as_config, "producer", json_object_get(root, "producer"));
        rc = read_quantization(as_config, cfg, path, err);
        json_decref(as_config);
    } else if (json_is_object(q) && str_ieq(json_object_get(q, "kv_cache_quant_algo"), "fp8")) {
        cfg->kv_cache_fp8 = true;
    }
    json_decref(root);
    return rc;
}

int g4_config_load(const char *dir, g4_config *cfg, g4_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = g4_read_file(path, NULL);
    if (!text) return g4_errorf(err, "%s: cannot read", path);
    int rc = g4_config_parse(text, path, cfg, err);
    free(text);
    if (!rc) rc = read_generation_config(dir, cfg, err);
    if (!rc) rc = read_hf_quant_config(dir, cfg, err);
    return rc;
}
