/* g4_config -> config.json text with the real checkpoint's structure
 * (model.md §1, §5.1): used by `g4 synth`. */
#include <jansson.h>
#include <stdlib.h>

#include "model/config.h"
#include "model/config_json.h"

static json_t *layer_types(const g4_config *c) {
    json_t *a = json_array();
    for (int l = 0; l < c->n_layers; l++)
        json_array_append_new(a, json_string(c->layer[l].kind == G4_ATTN_FULL ? "full_attention" : "sliding_attention"));
    return a;
}

/* The first layer of a kind carries that kind's geometry. */
static const g4_layer_geom *first_of(const g4_config *c, g4_attn_kind kind) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->layer[l].kind == kind) return &c->layer[l];
    return &c->layer[0];
}

static json_t *rope_parameters(const g4_config *c) {
    const g4_layer_geom *s = first_of(c, G4_ATTN_SLIDING), *f = first_of(c, G4_ATTN_FULL);
    json_t *full = json_pack("{s:s, s:f}", "rope_type", f->rope == G4_ROPE_PROPORTIONAL ? "proportional" : "default",
                             "rope_theta", (double)f->rope_theta);
    if (f->rope == G4_ROPE_PROPORTIONAL)
        json_object_set_new(full, "partial_rotary_factor", json_real((double)f->rope_pairs * 2.0 / f->head_dim));
    return json_pack("{s:{s:s, s:f}, s:o}", "sliding_attention", "rope_type", "default", "rope_theta",
                     (double)s->rope_theta, "full_attention", full);
}

static json_t *text_config(const g4_config *c) {
    const g4_layer_geom *s = first_of(c, G4_ATTN_SLIDING), *f = first_of(c, G4_ATTN_FULL);
    json_t *t = json_object();
    json_object_set_new(t, "model_type", json_string("gemma4_unified_text"));
    json_object_set_new(t, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(t, "hidden_size", json_integer(c->hidden));
    json_object_set_new(t, "intermediate_size", json_integer(c->ffn));
    json_object_set_new(t, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(t, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(t, "num_key_value_heads", json_integer(s->n_kv_heads));
    json_object_set_new(t, "head_dim", json_integer(s->head_dim));
    json_object_set_new(t, "global_head_dim", json_integer(f->head_dim));
    json_object_set_new(t, "num_global_key_value_heads", json_integer(f->n_kv_heads));
    json_object_set_new(t, "attention_k_eq_v", json_boolean(f->k_eq_v));
    json_object_set_new(t, "num_kv_shared_layers", json_integer(c->n_kv_shared_layers));
    json_object_set_new(t, "hidden_size_per_layer_input", json_integer(0));
    json_object_set_new(t, "vocab_size_per_layer_input", json_integer(0));
    json_object_set_new(t, "enable_moe_block", json_false());
    json_object_set_new(t, "use_double_wide_mlp", json_false());
    json_object_set_new(t, "hidden_activation", json_string("gelu_pytorch_tanh"));
    json_object_set_new(t, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(t, "sliding_window", json_integer(c->sliding_window));
    json_object_set_new(t, "layer_types", layer_types(c));
    json_object_set_new(t, "rope_parameters", rope_parameters(c));
    json_object_set_new(t, "final_logit_softcapping", c->final_softcap > 0 ? json_real(c->final_softcap) : json_null());
    json_object_set_new(t, "use_bidirectional_attention", json_string("vision"));
    json_object_set_new(t, "max_position_embeddings", json_integer(c->max_position));
    json_object_set_new(t, "attention_bias", json_false());
    json_object_set_new(t, "attention_dropout", json_real(0.0));
    json_object_set_new(t, "bos_token_id", json_integer(c->bos_id));
    json_object_set_new(t, "eos_token_id", json_integer(1));
    json_object_set_new(t, "pad_token_id", json_integer(c->pad_id));
    json_object_set_new(t, "tie_word_embeddings", json_true());
    json_object_set_new(t, "use_cache", json_true());
    json_object_set_new(t, "initializer_range", json_real(0.02));
    json_object_set_new(t, "dtype", json_string("bfloat16"));
    return t;
}

static void set_multimodal(json_t *root, const g4_config *c) {
    const char *ids[][2] = {{"boi_token_id", 0}, {"eoi_token_id", 0}, {"boa_token_id", 0}, {"eoa_token_index", 0},
                            {"image_token_id", 0}, {"audio_token_id", 0}, {"video_token_id", 0}};
    int vals[] = {c->boi_token_id, c->eoi_token_id, c->boa_token_id, c->eoa_token_id,
                  c->image_token_id, c->audio_token_id, c->video_token_id};
    for (int i = 0; i < 7; i++) json_object_set_new(root, ids[i][0], json_integer(vals[i]));
    if (c->vision_patch_dim)
        json_object_set_new(root, "vision_config",
                            json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f}", "model_type", "gemma4_unified_vision",
                                      "patch_size", 16, "pooling_kernel_size", 3, "model_patch_size", 48,
                                      "mm_embed_dim", c->hidden, "mm_posemb_size", c->vision_posemb,
                                      "num_soft_tokens", 280, "output_proj_dims", c->hidden, "rms_norm_eps", 1e-6));
    if (c->audio_dim)
        json_object_set_new(root, "audio_config",
                            json_pack("{s:s, s:i, s:i, s:i, s:i, s:f}", "model_type", "gemma4_unified_audio",
                                      "audio_embed_dim", c->audio_dim, "audio_samples_per_token", c->audio_dim,
                                      "hidden_size", c->audio_dim, "output_proj_dims", c->audio_dim, "rms_norm_eps", 1e-6));
}

json_t *g4_config_to_json(const g4_config *c) {
    json_t *root = json_object();
    bool assistant = g4_config_is_assistant(c);
    json_object_set_new(root, "architectures",
                        json_pack("[s]", assistant ? "Gemma4UnifiedAssistantForCausalLM" : "Gemma4UnifiedForConditionalGeneration"));
    json_object_set_new(root, "model_type", json_string(assistant ? "gemma4_unified_assistant" : "gemma4_unified"));
    if (assistant) {
        json_object_set_new(root, "backbone_hidden_size", json_integer(c->backbone_hidden));
        json_object_set_new(root, "use_ordered_embeddings", json_false());
        json_object_set_new(root, "num_centroids", json_integer(2048));
        json_object_set_new(root, "centroid_intermediate_top_k", json_integer(32));
    } else {
        set_multimodal(root, c);
    }
    json_t *eos = json_array();
    for (int i = 0; i < c->n_eos; i++) json_array_append_new(eos, json_integer(c->eos_ids[i]));
    json_object_set_new(root, "eos_token_id", eos);
    json_object_set_new(root, "tie_word_embeddings", json_true());
    json_object_set_new(root, "initializer_range", json_real(0.02));
    json_object_set_new(root, "dtype", json_string("bfloat16"));
    json_object_set_new(root, "text_config", text_config(c));
    json_object_set_new(root, "transformers_version", json_string("5.17.0"));
    return root;
}
