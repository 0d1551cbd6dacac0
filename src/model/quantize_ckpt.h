/* `g4 quantize`: a BF16 HF checkpoint -> an fp8_pb_wo checkpoint laid out as
 * ModelOpt exports it. Streams tensor by tensor (never holds the model),
 * quantizing each linear weight with all cores. */
#ifndef G4_MODEL_QUANTIZE_CKPT_H
#define G4_MODEL_QUANTIZE_CKPT_H

#include <stdbool.h>

#include "model/quant.h"
#include "util/err.h"

typedef struct {
    g4_calib calib;
    bool kv_cache_fp8;   /* mark the KV cache FP8 (scale 1.0: no calibration data) */
    bool progress;
} g4_quantize_opts;

int g4_quantize_checkpoint(const char *in_dir, const char *out_dir, const g4_quantize_opts *opts, g4_err *err);

#endif
