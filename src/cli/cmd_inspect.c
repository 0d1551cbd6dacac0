/* g4 inspect DIR: what a checkpoint holds, after the loader has validated it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "model/config.h"
#include "model/manifest.h"
#include "model/weights.h"

static const char *quant_name(g4_quant_kind q) {
    switch (q) {
    case G4_QUANT_MODELOPT_FP8_PB_WO: return "ModelOpt fp8_pb_wo (E4M3 weights, fp32 scale per 128x128 block)";
    case G4_QUANT_HF_FP8_BLOCK: return "HF fine-grained FP8 (weight_scale_inv, 128x128 blocks)";
    default: return "none (BF16)";
    }
}

static void print_geometry(const g4_config *c) {
    printf("architecture   %s (text: %s)\n", c->model_type, c->text_model_type[0] ? c->text_model_type : "-");
    printf("text stack     %d layers, hidden %d, ffn %d, %d query heads, vocab %d, softcap %g, eps %g\n",
           c->n_layers, c->hidden, c->ffn, c->n_heads, c->vocab_size, c->final_softcap, c->rms_eps);
    for (int l = 0; l < c->n_layers;) {
        int end = l;
        const g4_layer_geom *g = &c->layer[l];
        while (end + 1 < c->n_layers && !memcmp(&c->layer[end + 1], g, sizeof *g)) end++;
        printf("  layers %2d-%-2d %-7s head_dim %d, %d KV heads%s, RoPE %s theta %g (%d of %d pairs)%s\n", l, end,
               g->kind == G4_ATTN_FULL ? "full" : "sliding", g->head_dim, g->n_kv_heads, g->k_eq_v ? ", K==V" : "",
               g->rope == G4_ROPE_PROPORTIONAL ? "proportional" : "default", g->rope_theta, g->rope_pairs,
               g->head_dim / 2, g->window ? ", window" : "");
        l = end + 1;
    }
    if (c->sliding_window) printf("sliding window %d\n", c->sliding_window);
    printf("stop ids      ");
    for (int i = 0; i < c->n_eos; i++) printf(" %d", c->eos_ids[i]);
    printf("\n");
    if (g4_config_is_assistant(c))
        printf("assistant      backbone hidden %d, %d KV-shared layers\n", c->backbone_hidden, c->n_kv_shared_layers);
}

static void print_tensors(const st_model *m) {
    unsigned long long count[ST_DTYPE_COUNT] = {0}, bytes[ST_DTYPE_COUNT] = {0}, total = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        count[m->tensors[i]->dtype]++;
        bytes[m->tensors[i]->dtype] += st_nbytes(m->tensors[i]);
        total += st_nbytes(m->tensors[i]);
    }
    printf("tensors        %d in %d file(s), %.3f GB\n", m->n_tensors, m->n_files, total / 1e9);
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (count[d]) printf("  %-8s %5llu tensors %10.3f GB\n", st_dtype_name(d), count[d], bytes[d] / 1e9);
}

static void print_extra_tensors(const g4_weights *w) {
    g4_manifest_entry *man;
    int n = g4_manifest_build(&w->cfg, G4_MM_NAMES_ORIGINAL, &man);
    int extra = 0;
    for (int i = 0; i < w->ckpt->n_tensors; i++) {
        const char *name = w->ckpt->tensors[i]->name;
        char alias[160];
        bool known = false;
        for (int j = 0; j < n && !known; j++) {
            size_t len = strlen(man[j].name);
            known = !strcmp(man[j].name, name) ||
                    (!strncmp(man[j].name, name, len - 6) && strstr(name + len - 6, "weight_scale"));
        }
        if (!known && !g4_mm_name_to_transformers(name, alias, sizeof alias)) known = true;
        if (!known && (strstr(name, ".k_scale") || strstr(name, ".v_scale"))) continue;
        if (!known) printf("  not used:     %s\n", name), extra++;
    }
    free(man);
    if (extra) printf("(%d tensors the model does not use)\n", extra);
}

int cmd_inspect(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: g4 inspect DIR\n");
        return 2;
    }
    g4_err err;
    g4_weights *w = g4_weights_load(argv[1], NULL, &err);
    if (!w) {
        fprintf(stderr, "g4 inspect: %s\n", err.msg);
        return 1;
    }
    print_geometry(&w->cfg);
    printf("quantization   %s%s\n", quant_name(w->cfg.quant), w->cfg.kv_cache_fp8 ? "; FP8 KV cache" : "");
    if (w->cfg.quant_producer[0]) printf("producer       %s\n", w->cfg.quant_producer);
    int kv_from_ckpt = 0;
    for (int l = 0; l < w->cfg.n_layers; l++) kv_from_ckpt += w->layers[l].k_scale != 1.0f || w->layers[l].v_scale != 1.0f;
    printf("KV scales      %s\n", kv_from_ckpt ? "from the checkpoint" : "1.0 (none in the checkpoint)");
    print_tensors(w->ckpt);
    print_extra_tensors(w);
    unsigned long long repaired = 0;
    for (int i = 0; i < w->n_repairs; i++) {
        printf("  repaired %llu NaN bytes to +-448 in %s\n", (unsigned long long)w->repairs[i].count, w->repairs[i].name);
        repaired += w->repairs[i].count;
    }
    printf("NaN bytes      %llu repaired\n", repaired);
    g4_weights_free(w);
    return 0;
}
