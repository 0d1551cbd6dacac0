/* Synthetic checkpoints: the real names, shapes, dtypes and JSON, with random
 * weights whose statistics resemble a trained model's (per-block magnitudes
 * that vary, rare outliers, norms and layer_scalar != 1, no zeros). Used for
 * speed runs of the 12B shapes and as the small built-in demo model. */
#ifndef G4_MODEL_SYNTH_H
#define G4_MODEL_SYNTH_H

#include <stdint.h>

#include "model/config.h"

typedef enum { G4_SYNTH_BF16, G4_SYNTH_FP8 } g4_synth_dtype;

/* Fills cfg for a preset name: "tiny", "12b", "assistant-12b"; -1 if unknown. */
int g4_synth_preset(const char *name, g4_config *cfg, g4_err *err);

/* Writes config.json, generation_config.json, the safetensors (sharded) and,
 * for FP8, hf_quant_config.json, into out_dir. progress: print to stderr. */
int g4_synth_write(const g4_config *cfg, g4_synth_dtype dtype, uint64_t seed, const char *out_dir, int progress,
                   g4_err *err);

#endif
