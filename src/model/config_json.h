/* Writing a blueprint back out as a HF config.json (for synthetic checkpoints). */
#ifndef G4_MODEL_CONFIG_JSON_H
#define G4_MODEL_CONFIG_JSON_H

#include <jansson.h>

#include "model/config.h"

/* A new reference to config.json's object, in the real checkpoint's form. */
json_t *g4_config_to_json(const g4_config *cfg);

#endif
