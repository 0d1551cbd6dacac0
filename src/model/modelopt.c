/* ModelOpt's fp8_pb_wo metadata (see modelopt.h). */
#include "model/modelopt.h"

#include <stdio.h>

static json_t *exclude_list(bool has_mm) {
    json_t *a = json_array();
    json_array_append_new(a, json_string("lm_head"));
    if (has_mm) {
        json_array_append_new(a, json_string("model.embed_audio*"));
        json_array_append_new(a, json_string("model.embed_vision*"));
    }
    return a;
}

static json_t *producer(void) {
    return json_pack("{s:s, s:s}", "name", G4_MODELOPT_PRODUCER, "version", G4_MODELOPT_VERSION);
}

int g4_write_json_file(const char *path, json_t *obj, g4_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return g4_errorf(err, "%s: cannot create", path);
    int rc = json_dumpf(obj, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    fputc('\n', f);
    if (fclose(f) || rc) return g4_errorf(err, "%s: write failed", path);
    return 0;
}

int g4_modelopt_write_metadata(const char *out_dir, json_t *config, bool kv_cache_fp8, bool has_mm, g4_err *err) {
    json_t *qc = json_object();
    json_object_set_new(qc, "ignore", exclude_list(has_mm));
    json_object_set_new(qc, "quant_algo", json_string("fp8_pb_wo"));
    if (kv_cache_fp8)
        json_object_set_new(qc, "kv_cache_scheme", json_pack("{s:b, s:i, s:s}", "dynamic", 0, "num_bits", 8, "type", "float"));
    json_object_set_new(qc, "producer", producer());
    json_object_set_new(qc, "quant_method", json_string("modelopt"));
    json_object_set_new(config, "quantization_config", qc);

    json_t *quantization = json_object();
    json_object_set_new(quantization, "quant_algo", json_string("fp8_pb_wo"));
    if (kv_cache_fp8) json_object_set_new(quantization, "kv_cache_quant_algo", json_string("FP8"));
    json_object_set_new(quantization, "exclude_modules", exclude_list(has_mm));
    json_t *hf = json_object();
    json_object_set_new(hf, "producer", producer());
    json_object_set_new(hf, "quantization", quantization);
    char path[4096];
    snprintf(path, sizeof path, "%s/hf_quant_config.json", out_dir);
    int rc = g4_write_json_file(path, hf, err);
    json_decref(hf);
    return rc;
}
