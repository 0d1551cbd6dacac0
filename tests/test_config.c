/* config.json -> blueprint: the 12B's geometry in both spellings, and clear
 * errors for configs we cannot run. */
#include "test.h"
#include "model/config.h"
#include "model/synth.h"
#include "model/config_json.h"

#include <jansson.h>

/* The converter's spelling (model.md §1): global_head_dim etc. */
static const char *converter_12b =
    "{\"architectures\":[\"Gemma4UnifiedForConditionalGeneration\"],\"model_type\":\"gemma4_unified\","
    "\"eos_token_id\":[1,106],\"tie_word_embeddings\":true,"
    "\"text_config\":{\"model_type\":\"gemma4_unified_text\",\"vocab_size\":262144,\"hidden_size\":3840,"
    "\"intermediate_size\":15360,\"num_hidden_layers\":12,\"num_attention_heads\":16,\"num_key_value_heads\":8,"
    "\"head_dim\":256,\"global_head_dim\":512,\"num_global_key_value_heads\":1,\"attention_k_eq_v\":true,"
    "\"hidden_activation\":\"gelu_pytorch_tanh\",\"rms_norm_eps\":1e-06,\"sliding_window\":1024,"
    "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"sliding_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"full_attention\",\"sliding_attention\",\"sliding_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"sliding_attention\",\"full_attention\"],"
    "\"rope_parameters\":{\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000.0},"
    "\"full_attention\":{\"rope_type\":\"proportional\",\"partial_rotary_factor\":0.25,\"rope_theta\":1000000.0}},"
    "\"final_logit_softcapping\":30.0}}";

static void check_12b_geometry(const g4_config *c) {
    CHECK(c->hidden == 3840 && c->ffn == 15360 && c->n_heads == 16 && c->vocab_size == 262144);
    CHECK(c->final_softcap == 30.0f && c->sliding_window == 1024);
    for (int l = 0; l < c->n_layers; l++) {
        const g4_layer_geom *g = &c->layer[l];
        bool full = (l + 1) % 6 == 0;
        CHECKF(g->kind == (full ? G4_ATTN_FULL : G4_ATTN_SLIDING), "layer %d", l);
        CHECKF(g->head_dim == (full ? 512 : 256) && g->n_kv_heads == (full ? 1 : 8), "layer %d: %d/%d", l,
               g->head_dim, g->n_kv_heads);
        CHECK(g->k_eq_v == full);
        CHECK(g->rope == (full ? G4_ROPE_PROPORTIONAL : G4_ROPE_DEFAULT));
        CHECK(g->rope_pairs == (full ? 64 : 128));
        CHECK(g->rope_theta == (full ? 1e6f : 1e4f));
        CHECK(g->window == (full ? 0 : 1024));
    }
}

static void test_converter_spelling(void) {
    g4_config c;
    g4_err err;
    REQUIRE(g4_config_parse(converter_12b, "config.json", &c, &err) == 0);
    CHECK(c.n_layers == 12);
    check_12b_geometry(&c);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 1 && c.eos_ids[1] == 106);
    CHECK(c.quant == G4_QUANT_NONE);
}

/* transformers 5.x save_pretrained: per_layer_config keyed by (padded) index, no global_* fields. */
static void test_per_layer_config_spelling(void) {
    json_t *root = json_loads(converter_12b, 0, NULL);
    json_t *text = json_object_get(root, "text_config");
    json_object_del(text, "global_head_dim");
    json_object_del(text, "num_global_key_value_heads");
    json_object_set_new(text, "per_layer_config",
                        json_pack("{s:{s:i,s:i}, s:{s:i,s:i}}", "05", "head_dim", 512, "num_key_value_heads", 1, "11",
                                  "head_dim", 512, "num_key_value_heads", 1));
    json_object_set_new(root, "eos_token_id", json_null());
    char *s = json_dumps(root, 0);
    g4_config c;
    g4_err err;
    CHECKF(g4_config_parse(s, "config.json", &c, &err) == 0, "%s", err.msg);
    check_12b_geometry(&c);
    /* unpadded keys and a layer-type key work too */
    json_object_set_new(text, "per_layer_config",
                        json_pack("{s:{s:i,s:i}}", "full_attention", "head_dim", 512, "num_key_value_heads", 1));
    free(s);
    s = json_dumps(root, 0);
    CHECKF(g4_config_parse(s, "config.json", &c, &err) == 0, "%s", err.msg);
    check_12b_geometry(&c);
    json_object_set_new(text, "per_layer_config", json_pack("{s:{s:i}}", "99", "head_dim", 512));
    free(s);
    s = json_dumps(root, 0);
    CHECK(g4_config_parse(s, "config.json", &c, &err) != 0 && strstr(err.msg, "\"99\""));
    free(s);
    json_decref(root);
}

static void expect_config_error(const char *mutation_key, json_t *value, const char *needle) {
    json_t *root = json_loads(converter_12b, 0, NULL);
    json_t *text = json_object_get(root, "text_config");
    if (value) json_object_set_new(text, mutation_key, value);
    else json_object_del(text, mutation_key);
    char *s = json_dumps(root, 0);
    g4_config c;
    g4_err err = {{0}};
    CHECKF(g4_config_parse(s, "my/config.json", &c, &err) != 0, "accepted %s", mutation_key);
    CHECKF(strstr(err.msg, "my/config.json") && strstr(err.msg, needle), "%s", err.msg);
    free(s);
    json_decref(root);
}

static void test_bad_configs(void) {
    expect_config_error("hidden_size", NULL, "\"hidden_size\" is missing");
    expect_config_error("hidden_size", json_string("big"), "not an integer");
    expect_config_error("num_hidden_layers", json_integer(0), "must be positive");
    expect_config_error("layer_types", json_pack("[s]", "full_attention"), "layer_types");
    expect_config_error("hidden_activation", json_string("relu"), "relu");
    expect_config_error("enable_moe_block", json_true(), "moe");
    expect_config_error("num_key_value_heads", json_integer(3), "KV heads");
    expect_config_error("rope_parameters", json_pack("{s:{s:s}}", "sliding_attention", "rope_type", "yarn"), "yarn");
    g4_config c;
    g4_err err;
    CHECK(g4_config_parse("{\"model_type\":\"llama\"}", "x.json", &c, &err) != 0 && strstr(err.msg, "llama"));
    CHECK(g4_config_parse("{not json", "x.json", &c, &err) != 0 && strstr(err.msg, "not valid JSON"));
}

static void test_quantization_config(void) {
    json_t *root = json_loads(converter_12b, 0, NULL);
    json_object_set_new(root, "quantization_config",
                        json_pack("{s:[s], s:s, s:{s:b,s:i,s:s}, s:s}", "ignore", "lm_head", "quant_algo", "fp8_pb_wo",
                                  "kv_cache_scheme", "dynamic", 0, "num_bits", 8, "type", "float", "quant_method",
                                  "modelopt"));
    char *s = json_dumps(root, 0);
    g4_config c;
    g4_err err;
    CHECK(g4_config_parse(s, "c", &c, &err) == 0 && c.quant == G4_QUANT_MODELOPT_FP8_PB_WO && c.kv_cache_fp8);
    free(s);
    json_object_set_new(root, "quantization_config",
                        json_pack("{s:s, s:s, s:[i,i]}", "quant_method", "fp8", "activation_scheme", "dynamic",
                                  "weight_block_size", 128, 128));
    s = json_dumps(root, 0);
    CHECK(g4_config_parse(s, "c", &c, &err) == 0 && c.quant == G4_QUANT_HF_FP8_BLOCK && !c.kv_cache_fp8);
    free(s);
    json_object_set_new(root, "quantization_config", json_pack("{s:s, s:s}", "quant_method", "modelopt", "quant_algo", "NVFP4"));
    s = json_dumps(root, 0);
    CHECK(g4_config_parse(s, "c", &c, &err) != 0 && strstr(err.msg, "NVFP4"));
    free(s);
    json_decref(root);
}

/* The synth presets' JSON parses back to the same blueprint. */
static void test_presets_round_trip(void) {
    const char *presets[] = {"12b", "tiny", "assistant-12b"};
    for (int i = 0; i < 3; i++) {
        g4_config a, b;
        g4_err err;
        REQUIRE(g4_synth_preset(presets[i], &a, &err) == 0);
        json_t *j = g4_config_to_json(&a);
        char *s = json_dumps(j, 0);
        CHECKF(g4_config_parse(s, presets[i], &b, &err) == 0, "%s", err.msg);
        CHECK(a.n_layers == b.n_layers && a.hidden == b.hidden && a.backbone_hidden == b.backbone_hidden);
        for (int l = 0; l < a.n_layers; l++) CHECKF(!memcmp(&a.layer[l], &b.layer[l], sizeof a.layer[l]), "%s layer %d", presets[i], l);
        if (i == 0) {
            CHECK(b.n_layers == 48);
            check_12b_geometry(&b);
        }
        free(s);
        json_decref(j);
    }
}

TEST_MAIN("config", TEST_CASE(test_converter_spelling), TEST_CASE(test_per_layer_config_spelling),
          TEST_CASE(test_bad_configs), TEST_CASE(test_quantization_config), TEST_CASE(test_presets_round_trip))
