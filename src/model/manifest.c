/* Every tensor of a gemma4_unified / gemma4_unified_assistant checkpoint
 * (model.md §3, §5.2). */
#include "model/manifest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    g4_manifest_entry *e;
    int n, cap;
} list;

static void add(list *l, g4_tensor_role role, int layer, int ndim, int64_t d0, int64_t d1, int64_t d2,
                const char *fmt, ...) __attribute__((format(printf, 8, 9)));

static void add(list *l, g4_tensor_role role, int layer, int ndim, int64_t d0, int64_t d1, int64_t d2,
                const char *fmt, ...) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->e = realloc(l->e, sizeof *l->e * l->cap);
    }
    g4_manifest_entry *e = &l->e[l->n++];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->role = role;
    e->layer = layer;
    e->ndim = ndim;
    e->shape[0] = d0, e->shape[1] = d1, e->shape[2] = d2;
}

const char *g4_text_prefix(const g4_config *cfg) {
    return g4_config_is_assistant(cfg) ? "model." : "model.language_model.";
}

static void add_layer(list *l, const g4_config *c, int i) {
    const char *p = g4_text_prefix(c);
    const g4_layer_geom *g = &c->layer[i];
    int64_t h = c->hidden, q = g4_layer_q_dim(c, i), kv = g4_layer_kv_dim(c, i);
    add(l, G4_T_NORM, i, 1, h, 0, 0, "%slayers.%d.input_layernorm.weight", p, i);
    add(l, G4_T_SCALAR, i, 1, 1, 0, 0, "%slayers.%d.layer_scalar", p, i);
    add(l, G4_T_LINEAR, i, 2, c->ffn, h, 0, "%slayers.%d.mlp.gate_proj.weight", p, i);
    add(l, G4_T_LINEAR, i, 2, c->ffn, h, 0, "%slayers.%d.mlp.up_proj.weight", p, i);
    add(l, G4_T_LINEAR, i, 2, h, c->ffn, 0, "%slayers.%d.mlp.down_proj.weight", p, i);
    add(l, G4_T_NORM, i, 1, h, 0, 0, "%slayers.%d.post_attention_layernorm.weight", p, i);
    add(l, G4_T_NORM, i, 1, h, 0, 0, "%slayers.%d.post_feedforward_layernorm.weight", p, i);
    add(l, G4_T_NORM, i, 1, h, 0, 0, "%slayers.%d.pre_feedforward_layernorm.weight", p, i);
    bool kv_shared = g4_config_is_assistant(c) && i >= c->n_layers - c->n_kv_shared_layers;
    if (!kv_shared) {
        add(l, G4_T_NORM, i, 1, g->head_dim, 0, 0, "%slayers.%d.self_attn.k_norm.weight", p, i);
        add(l, G4_T_LINEAR, i, 2, kv, h, 0, "%slayers.%d.self_attn.k_proj.weight", p, i);
    }
    add(l, G4_T_LINEAR, i, 2, h, q, 0, "%slayers.%d.self_attn.o_proj.weight", p, i);
    add(l, G4_T_NORM, i, 1, g->head_dim, 0, 0, "%slayers.%d.self_attn.q_norm.weight", p, i);
    add(l, G4_T_LINEAR, i, 2, q, h, 0, "%slayers.%d.self_attn.q_proj.weight", p, i);
    if (!kv_shared && !g->k_eq_v)
        add(l, G4_T_LINEAR, i, 2, kv, h, 0, "%slayers.%d.self_attn.v_proj.weight", p, i);
}

static void add_multimodal(list *l, const g4_config *c, g4_mm_naming mm) {
    const char *v = mm == G4_MM_NAMES_ORIGINAL ? "model.vision_embedder" : "model.embed_vision";
    int64_t h = c->hidden, pd = c->vision_patch_dim;
    if (pd) {
        add(l, G4_T_MM, -1, 1, pd, 0, 0, "%s.patch_ln1.weight", v);
        add(l, G4_T_MM, -1, 1, pd, 0, 0, "%s.patch_ln1.bias", v);
        add(l, G4_T_MM, -1, 2, h, pd, 0, "%s.patch_dense.weight", v);
        add(l, G4_T_MM, -1, 1, h, 0, 0, "%s.patch_dense.bias", v);
        add(l, G4_T_MM, -1, 1, h, 0, 0, "%s.patch_ln2.weight", v);
        add(l, G4_T_MM, -1, 1, h, 0, 0, "%s.patch_ln2.bias", v);
        add(l, G4_T_MM, -1, 3, c->vision_posemb, 2, h, "%s.pos_embedding", v);
        add(l, G4_T_MM, -1, 1, h, 0, 0, "%s.pos_norm.weight", v);
        add(l, G4_T_MM, -1, 1, h, 0, 0, "%s.pos_norm.bias", v);
        add(l, G4_T_MM, -1, 2, h, h, 0, "model.embed_vision.%sembedding_projection.weight",
            mm == G4_MM_NAMES_ORIGINAL ? "" : "multimodal_embedder.");
    }
    if (c->audio_dim)
        add(l, G4_T_MM, -1, 2, h, c->audio_dim, 0, "model.embed_audio.embedding_projection.weight");
}

int g4_manifest_build(const g4_config *c, g4_mm_naming mm, g4_manifest_entry **out) {
    list l = {0};
    const char *p = g4_text_prefix(c);
    add(&l, G4_T_EMBED, -1, 2, c->vocab_size, c->hidden, 0, "%sembed_tokens.weight", p);
    for (int i = 0; i < c->n_layers; i++) add_layer(&l, c, i);
    add(&l, G4_T_NORM, -1, 1, c->hidden, 0, 0, "%snorm.weight", p);
    if (g4_config_is_assistant(c)) {
        add(&l, G4_T_LINEAR, -1, 2, c->hidden, 2 * c->backbone_hidden, 0, "pre_projection.weight");
        add(&l, G4_T_LINEAR, -1, 2, c->backbone_hidden, c->hidden, 0, "post_projection.weight");
    } else {
        add_multimodal(&l, c, mm);
    }
    *out = l.e;
    return l.n;
}

int g4_mm_name_to_transformers(const char *name, char *out, size_t size) {
    static const char *orig = "model.vision_embedder.";
    if (!strncmp(name, orig, strlen(orig))) {
        snprintf(out, size, "model.embed_vision.%s", name + strlen(orig));
        return 0;
    }
    if (!strcmp(name, "model.embed_vision.embedding_projection.weight")) {
        snprintf(out, size, "model.embed_vision.multimodal_embedder.embedding_projection.weight");
        return 0;
    }
    if (!strncmp(name, "model.embed_vision.", 19) || !strncmp(name, "model.embed_audio.", 18)) {
        snprintf(out, size, "%s", name);
        return 0;
    }
    return -1;
}
