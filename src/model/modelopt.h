/* The JSON ModelOpt writes next to an fp8_pb_wo checkpoint
 * (checkpoint-format.md §2): config.json "quantization_config" and
 * hf_quant_config.json, field by field. */
#ifndef G4_MODEL_MODELOPT_H
#define G4_MODEL_MODELOPT_H

#include <jansson.h>
#include <stdbool.h>

#include "model/quant.h"
#include "model/safetensors.h"
#include "util/err.h"

#define G4_MODELOPT_PRODUCER "modelopt"
#define G4_MODELOPT_VERSION "0.45.0.dev158+gf9423c0d3" /* the version AxionML/Gemma-4-12B-FP8 names */

/* Adds "quantization_config" to config (in place) and writes
 * OUT_DIR/hf_quant_config.json. has_mm: the model has multimodal embedders
 * (they join lm_head on the exclude list). */
int g4_modelopt_write_metadata(const char *out_dir, json_t *config, bool kv_cache_fp8, bool has_mm, g4_err *err);

/* Declares an fp8_pb_wo linear to a writer: `name` (F8_E4M3 [rows, cols]) and
 * its `...weight_scale` (F32 [ceil(rows/128), 1, ceil(cols/128), 1]). */
int g4_modelopt_declare_linear(st_writer *w, const char *name, const int64_t shape[2], g4_err *err);

/* Quantizes a BF16 [rows, cols] weight and writes both declared tensors. */
int g4_modelopt_write_linear(st_writer *w, const char *name, const g4_bf16 *values, int rows, int cols,
                             g4_calib calib, g4_err *err);

/* Writes a JSON object as HF does (indent 2, keys in insertion order, final newline). */
int g4_write_json_file(const char *path, json_t *obj, g4_err *err);

#endif
