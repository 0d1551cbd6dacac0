/* The checkpoint manifest: every tensor a config implies, with its real HF
 * name, shape and role. One list drives synthetic checkpoints, the loader's
 * checks, the quantizer's choice of what to quantize, and `g4 inspect`. */
#ifndef G4_MODEL_MANIFEST_H
#define G4_MODEL_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

typedef enum {
    G4_T_LINEAR,   /* [out, in] projection: quantized to fp8_pb_wo */
    G4_T_EMBED,    /* token embedding (also the tied LM head): BF16 */
    G4_T_NORM,     /* RMSNorm weight vector: BF16 */
    G4_T_SCALAR,   /* layer_scalar [1]: BF16 */
    G4_T_MM,       /* multimodal embedder: BF16, never quantized */
} g4_tensor_role;

typedef struct {
    char name[128];
    g4_tensor_role role;
    int layer;            /* -1 for tensors outside the layer stack */
    int ndim;
    int64_t shape[3];
} g4_manifest_entry;

/* On-disk names of the multimodal embedders differ between Google's original
 * checkpoint (model.vision_embedder.*) and transformers/ModelOpt exports
 * (model.embed_vision.*); see checkpoint-format.md §6. */
typedef enum { G4_MM_NAMES_ORIGINAL, G4_MM_NAMES_TRANSFORMERS } g4_mm_naming;

/* Fills *out (malloc'd) with every tensor of the model; returns the count. */
int g4_manifest_build(const g4_config *cfg, g4_mm_naming mm, g4_manifest_entry **out);

/* Prefix of the text stack: "model.language_model." or "model." (assistant). */
const char *g4_text_prefix(const g4_config *cfg);

/* Maps a multimodal name in either spelling to the transformers spelling
 * (what ModelOpt writes); returns 0 and fills out, or -1 if not multimodal. */
int g4_mm_name_to_transformers(const char *name, char *out, size_t size);

#endif
