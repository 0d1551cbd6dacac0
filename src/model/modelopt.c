/* ModelOpt's fp8_pb_wo metadata (see modelopt.h). */
#include "model/modelopt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void scale_name(char *out, size_t size, const char *weight_name) {
    snprintf(out, size, "%.*sweight_scale", (int)(strlen(weight_name) - strlen("weight")), weight_name);
}

int g4_modelopt_declare_linear(st_writer *w, const char *name, const int64_t shape[2], g4_err *err) {
    char sname[256];
    scale_name(sname, sizeof sname, name);
    const int64_t sshape[4] = {g4_qblocks((int)shape[0]), 1, g4_qblocks((int)shape[1]), 1};
    return st_writer_add(w, name, ST_F8_E4M3, 2, shape, err) || st_writer_add(w, sname, ST_F32, 4, sshape, err) ? -1 : 0;
}

int g4_modelopt_write_linear(st_writer *w, const char *name, const g4_bf16 *values, int rows, int cols,
                             g4_calib calib, g4_err *err) {
    uint8_t *codes = malloc((size_t)rows * cols);
    float *scales = malloc(sizeof(float) * g4_qblocks(rows) * g4_qblocks(cols));
    int rc = codes && scales ? 0 : g4_errorf(err, "out of memory quantizing '%s'", name);
    if (!rc) {
        g4_quantize_bf16(values, rows, cols, calib, codes, scales);
        char sname[256];
        scale_name(sname, sizeof sname, name);
        rc = st_writer_write(w, name, codes, err) || st_writer_write(w, sname, scales, err) ? -1 : 0;
    }
    free(codes);
    free(scales);
    return rc;
}
