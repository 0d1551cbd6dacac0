/* The Gemma 4 chat template, rendered natively: an OpenAI chat request in,
 * the exact prompt text that Google's official Jinja template gives out
 * (as Hugging Face renders it: trim_blocks, lstrip_blocks, bos_token
 * "<bos>", string tool-call arguments parsed with json.loads first).
 *
 * This is not a Jinja interpreter. It walks the request the way the template
 * does, so only the templates it was written against are supported; use
 * chat_identify() to check a model's template before trusting the output.
 *
 * Request fields read: messages, tools, add_generation_prompt (default
 * true), chat_template_kwargs.enable_thinking and
 * chat_template_kwargs.preserve_thinking (both default false). Other fields
 * are ignored.
 *
 * Where the template would render something a client surely did not mean,
 * chat_render refuses instead (the only departures from the template):
 *  - a role other than system, developer, user, assistant, tool;
 *  - a role "tool" message the template would silently drop (no assistant
 *    message with tool_calls before it), or whose tool_call_id matches none
 *    of that message's calls (the template would call it "unknown");
 *  - a content part whose type the template ignores (anything but text,
 *    image, image_url, audio, input_audio, video), e.g. input_image;
 *  - content that is neither a string, a list of parts nor null. */
#ifndef G4_TEXT_CHAT_TEMPLATE_H
#define G4_TEXT_CHAT_TEMPLATE_H

#include <jansson.h>
#include <stddef.h>

#include "util/err.h"

typedef enum {
    CHAT_TMPL_UNKNOWN = 0,
    CHAT_TMPL_MAINLINE, /* 2026-07-09 template of 12B, 26B-A4B, 31B */
    CHAT_TMPL_E2B_E4B,  /* same release for E2B/E4B: no empty thought block
                           in the generation prompt when thinking is off */
} chat_variant;

/* Renders the prompt for `request` (an OpenAI chat completion body).
 * Returns a malloc'd NUL-terminated string (its length in *len if len is
 * not NULL; the text may contain NUL bytes from \u0000 escapes), or NULL
 * with err naming the message index and field at fault. */
char *chat_render(const json_t *request, chat_variant variant, size_t *len, g4_err *err);

/* Recognises a template text by its SHA-256 after trailing whitespace is
 * removed (so a copy without the final newline, as tokenizer_config.json
 * holds it, matches). Writes that hex digest to sha_hex if not NULL. */
chat_variant chat_identify(const char *text, size_t len, char sha_hex[65]);

const char *chat_variant_name(chat_variant v);
/* "mainline" / "e2b_e4b" -> variant; CHAT_TMPL_UNKNOWN otherwise. */
chat_variant chat_variant_from_name(const char *name);

/* Reads a model directory's template: DIR/chat_template.jinja if present,
 * else the chat_template string of DIR/tokenizer_config.json (or its
 * "default" entry when it is a list of named templates). Returns malloc'd
 * text, or NULL with err set. *source gets the file it came from
 * (static storage, overwritten by the next call). */
char *chat_read_model_template(const char *dir, size_t *len, const char **source, g4_err *err);

#endif
