/* Which chat template a model ships, and whether chat_render reproduces it.
 * Templates are recognised by hash, not parsed: the renderer is native, so
 * any edit to the template (even one that looks harmless) means its output
 * is no longer known to match. */
#include "text/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/sha256.h"
#include "util/file.h"

/* SHA-256 of the template text with trailing whitespace removed. */
static const struct {
    const char *sha;
    chat_variant variant;
} known[] = {
    /* google/gemma-4-{12B,26B-A4B,31B}-it chat_template.jinja, 2026-07-09 */
    {"6a1015c47ccfcfa67c3b772385bccee357a4d37c3cda37bd202e9047f391ab82", CHAT_TMPL_MAINLINE},
    /* the same with the comment's em dash made ASCII (ollama's copy) */
    {"2af48814bacaf2a35a2d57aa19eee6c42ed530011977e8f414cf1d467da446c2", CHAT_TMPL_MAINLINE},
    /* google/gemma-4-{E2B,E4B}-it chat_template.jinja, 2026-07-09 */
    {"603a42db292c25278e9b23d94c7abbe77453f13e26a053c43c5c2f900b4136f7", CHAT_TMPL_E2B_E4B},
};

chat_variant chat_identify(const char *text, size_t len, char sha_hex[65]) {
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ' ||
                   text[len - 1] == '\t'))
        len--;
    char hex[65];
    g4_sha256_hex(text, len, hex);
    if (sha_hex) memcpy(sha_hex, hex, sizeof hex);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(hex, known[i].sha)) return known[i].variant;
    return CHAT_TMPL_UNKNOWN;
}

const char *chat_variant_name(chat_variant v) {
    switch (v) {
    case CHAT_TMPL_MAINLINE: return "mainline";
    case CHAT_TMPL_E2B_E4B: return "e2b_e4b";
    default: return "unknown";
    }
}

chat_variant chat_variant_from_name(const char *name) {
    if (!strcmp(name, "mainline")) return CHAT_TMPL_MAINLINE;
    if (!strcmp(name, "e2b_e4b")) return CHAT_TMPL_E2B_E4B;
    return CHAT_TMPL_UNKNOWN;
}


/* tokenizer_config.json's chat_template: a string, or a list of
 * {"name", "template"} of which "default" is the chat template. */
static char *template_from_config(const char *path, size_t *len, g4_err *err) {
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    if (!cfg) {
        g4_errorf(err, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    json_t *t = json_object_get(cfg, "chat_template");
    for (size_t i = 0; json_is_array(t) && i < json_array_size(t); i++) {
        json_t *e = json_array_get(t, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name && !strcmp(name, "default")) t = json_object_get(e, "template");
    }
    char *text = NULL;
    if (json_is_string(t)) {
        *len = json_string_length(t);
        text = malloc(*len + 1);
        if (text) memcpy(text, json_string_value(t), *len + 1);
    }
    if (!text) g4_errorf(err, "%s: no chat_template string", path);
    json_decref(cfg);
    return text;
}

char *chat_read_model_template(const char *dir, size_t *len, const char **source, g4_err *err) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    *source = path;
    char *text = g4_read_file(path, len);
    if (text) return text;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        g4_errorf(err, "%s: no chat_template.jinja and no tokenizer_config.json", dir);
        return NULL;
    }
    fclose(f);
    return template_from_config(path, len, err);
}
