/* The Gemma 4 chat template in C (see chat_template.h).
 *
 * The code follows the official template (chat_template.jinja, 2026-07-09)
 * top to bottom: macros first (format_parameters, format_function_declaration,
 * format_tool_response_block, strip_thinking; format_argument is in
 * chat_value.c), then the system block, the message loop and the generation
 * prompt. Names in comments (ns.prev_message_type, continues_into_next, ...)
 * are the template's, so the two can be read side by side.
 *
 * Every tag in the template strips the whitespace around it, so the only
 * text emitted is what its {{ }} expressions and literal commas produce. */
#include "text/chat_template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat_value.h"
#include "util/sha256.h"
#include "util/strbuf.h"

#define Q "<|\"|>" /* the template's string delimiter token */

/* ns.prev_message_type */
typedef enum { PREV_NONE, PREV_THINK, PREV_TOOL, PREV_TOOL_CALL, PREV_TOOL_RESPONSE } prev_type;

typedef struct {
    strbuf out;
    const json_t *msgs;    /* the request's messages */
    size_t first, n;       /* loop_messages = msgs[first..n): a leading system turn is skipped */
    long last_user;        /* ns_turn.last_user_idx, a loop index, -1 if no user message */
    int thinking;          /* enable_thinking */
    int preserve;          /* preserve_thinking */
    int gen_prompt;        /* add_generation_prompt */
    chat_variant variant;
    prev_type prev;
    const char *prev_role; /* ns.prev_non_tool_role: the role as sent ("assistant") */
    g4_err *err;
} render_ctx;

static int starts_block_comma(strbuf *sb, int *add_comma) {
    if (*add_comma) sb_addc(sb, ',');
    *add_comma = 1;
    return 0;
}

static int str_eq(const json_t *v, const char *s) {
    return json_is_string(v) && !strcmp(json_string_value(v), s);
}

/* ---- format_parameters ------------------------------------------------- */

static int format_parameters(strbuf *sb, const json_t *props, int filter_keys, const char *path,
                             g4_err *err);

/* `item_value | map('upper') | list`, then format_argument of that list. */
static int format_upper_list(strbuf *sb, const json_t *v, const char *path, g4_err *err) {
    if (!json_is_array(v) && !json_is_object(v))
        return g4_errorf(err, "%s.items.type: must be a string or a list", path);
    json_t *list = json_array();
    const char *key;
    json_t *val;
    if (json_is_array(v))
        for (size_t i = 0; i < json_array_size(v); i++) {
            strbuf u = STRBUF_INIT;
            cv_upper(&u, json_array_get(v, i));
            json_array_append_new(list, json_stringn(u.data ? u.data : "", u.len));
            sb_free(&u);
        }
    else
        json_object_foreach((json_t *)v, key, val) {
            json_t *k = json_string(key);
            strbuf u = STRBUF_INIT;
            cv_upper(&u, k);
            json_array_append_new(list, json_stringn(u.data ? u.data : "", u.len));
            sb_free(&u);
            json_decref(k);
        }
    cv_format_argument(sb, list, 1);
    json_decref(list);
    return 0;
}

/* One entry of an array property's `items` schema. */
static int format_item_entry(strbuf *sb, const char *key, const json_t *v, const char *path,
                             g4_err *err) {
    if (!strcmp(key, "properties")) {
        sb_adds(sb, "properties:{");
        if (json_is_object(v) && format_parameters(sb, v, 0, path, err)) return -1;
        sb_addc(sb, '}');
    } else if (!strcmp(key, "required")) {
        sb_adds(sb, "required:[");
        if (cv_quoted_items(sb, v, path, err)) return -1;
        sb_addc(sb, ']');
    } else if (!strcmp(key, "type") && json_is_string(v)) {
        sb_adds(sb, "type:" Q);
        cv_upper(sb, v);
        sb_adds(sb, Q);
    } else if (!strcmp(key, "type")) {
        sb_adds(sb, "type:");
        if (format_upper_list(sb, v, path, err)) return -1;
    } else {
        sb_adds(sb, key);
        sb_addc(sb, ':');
        cv_format_argument(sb, v, 1);
    }
    return 0;
}

static int format_items(strbuf *sb, const json_t *items, const char *path, g4_err *err) {
    size_t n;
    const char **keys = cv_sorted_keys(items, &n);
    int first = 1, rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const json_t *v = json_object_get(items, keys[i]);
        if (json_is_null(v)) continue;
        if (!first) sb_addc(sb, ',');
        first = 0;
        rc = format_item_entry(sb, keys[i], v, path, err);
    }
    free(keys);
    return rc;
}

/* The OBJECT branch: nested properties (or, without them, the schema's own
 * non-standard keys treated as properties, as the template does), then
 * required. */
static int format_object_body(strbuf *sb, const json_t *value, int *comma, const char *path,
                              g4_err *err) {
    const json_t *props = cv_get(value, "properties");
    starts_block_comma(sb, comma);
    sb_adds(sb, "properties:{");
    int rc = json_is_object(props) ? format_parameters(sb, props, 0, path, err)
                                   : format_parameters(sb, value, 1, path, err);
    if (rc) return -1;
    sb_addc(sb, '}');
    const json_t *req = cv_get(value, "required");
    if (cv_truthy(req)) {
        starts_block_comma(sb, comma);
        sb_adds(sb, "required:[");
        if (cv_quoted_items(sb, req, path, err)) return -1;
        sb_addc(sb, ']');
    }
    return 0;
}

/* key:{description:...,enum/items...,nullable:true,properties...,type:<|"|>T<|"|>} */
static int format_property(strbuf *sb, const char *key, const json_t *value, const char *path,
                           g4_err *err) {
    int comma = 0;
    sb_adds(sb, key);
    sb_adds(sb, ":{");
    const json_t *desc = cv_get(value, "description");
    if (cv_truthy(desc)) {
        sb_adds(sb, "description:" Q);
        cv_str(sb, desc);
        sb_adds(sb, Q);
        comma = 1;
    }
    strbuf t = STRBUF_INIT;
    cv_upper(&t, cv_get(value, "type"));
    const char *type = t.data ? t.data : "";
    const json_t *items = cv_get(value, "items");
    if (!strcmp(type, "STRING") && cv_truthy(cv_get(value, "enum"))) {
        starts_block_comma(sb, &comma);
        sb_adds(sb, "enum:");
        cv_format_argument(sb, cv_get(value, "enum"), 1);
    } else if (!strcmp(type, "ARRAY") && json_is_object(items) && json_object_size(items)) {
        starts_block_comma(sb, &comma);
        sb_adds(sb, "items:{");
        if (format_items(sb, items, path, err)) goto fail;
        sb_addc(sb, '}');
    }
    if (cv_truthy(cv_get(value, "nullable"))) {
        starts_block_comma(sb, &comma);
        sb_adds(sb, "nullable:true");
    }
    if (!strcmp(type, "OBJECT") && format_object_body(sb, value, &comma, path, err)) goto fail;
    starts_block_comma(sb, &comma);
    sb_adds(sb, "type:" Q);
    sb_add(sb, type, t.len);
    sb_adds(sb, Q "}");
    sb_free(&t);
    return 0;
fail:
    sb_free(&t);
    return -1;
}

static int is_standard_key(const char *k) {
    static const char *const std[] = {"description", "type", "properties", "required", "nullable"};
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++)
        if (!strcmp(k, std[i])) return 1;
    return 0;
}

static int format_parameters(strbuf *sb, const json_t *props, int filter_keys, const char *path,
                             g4_err *err) {
    if (!json_is_object(props))
        return g4_errorf(err, "%s: properties must be an object", path);
    size_t n;
    const char **keys = cv_sorted_keys(props, &n);
    int first = 1, rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (filter_keys && is_standard_key(keys[i])) continue;
        if (!first) sb_addc(sb, ',');
        first = 0;
        rc = format_property(sb, keys[i], json_object_get(props, keys[i]), path, err);
    }
    free(keys);
    return rc;
}

/* ---- format_function_declaration --------------------------------------- */

/* ,parameters:{properties:{...},required:[...],type:<|"|>OBJECT<|"|>}
 * (the closing brace comes only with a type, exactly as in the template) */
static int format_params_block(strbuf *sb, const json_t *params, const char *path, g4_err *err) {
    sb_adds(sb, ",parameters:{");
    const json_t *props = cv_get(params, "properties");
    if (cv_truthy(props)) {
        sb_adds(sb, "properties:{");
        if (format_parameters(sb, props, 0, path, err)) return -1;
        sb_adds(sb, "},");
    }
    const json_t *req = cv_get(params, "required");
    if (cv_truthy(req)) {
        sb_adds(sb, "required:[");
        if (cv_quoted_items(sb, req, path, err)) return -1;
        sb_adds(sb, "],");
    }
    const json_t *type = cv_get(params, "type");
    if (cv_truthy(type)) {
        sb_adds(sb, "type:" Q);
        cv_upper(sb, type);
        sb_adds(sb, Q "}");
    }
    return 0;
}

static void format_response_decl(strbuf *sb, const json_t *resp) {
    sb_adds(sb, ",response:{");
    const json_t *desc = cv_get(resp, "description");
    if (cv_truthy(desc)) {
        sb_adds(sb, "description:" Q);
        cv_str(sb, desc);
        sb_adds(sb, Q ",");
    }
    strbuf t = STRBUF_INIT;
    cv_upper(&t, cv_get(resp, "type"));
    if (t.data && !strcmp(t.data, "OBJECT")) sb_adds(sb, "type:" Q "OBJECT" Q "}");
    sb_free(&t);
}

static int format_declaration(strbuf *sb, const json_t *tool, size_t idx, g4_err *err) {
    char path[64];
    snprintf(path, sizeof path, "tools[%zu].function", idx);
    const json_t *fn = cv_get(tool, "function");
    if (!json_is_object(fn)) return g4_errorf(err, "%s: missing or not an object", path);
    sb_adds(sb, "declaration:");
    cv_str(sb, cv_get(fn, "name"));
    sb_adds(sb, "{description:" Q);
    cv_str(sb, cv_get(fn, "description"));
    sb_adds(sb, Q);
    const json_t *params = cv_get(fn, "parameters");
    if (cv_truthy(params) && format_params_block(sb, params, path, err)) return -1;
    if (json_object_get(fn, "response")) format_response_decl(sb, json_object_get(fn, "response"));
    sb_addc(sb, '}');
    return 0;
}

/* <|tool>{declaration | trim}<tool|> for each tool */
static int render_tools(render_ctx *c, const json_t *tools) {
    if (!json_is_array(tools)) return g4_errorf(c->err, "tools: must be a list");
    for (size_t i = 0; i < json_array_size(tools); i++) {
        strbuf d = STRBUF_INIT;
        if (format_declaration(&d, json_array_get(tools, i), i, c->err)) {
            sb_free(&d);
            return -1;
        }
        size_t off, len;
        cv_strip(d.data ? d.data : "", d.len, &off, &len);
        sb_adds(&c->out, "<|tool>");
        sb_add(&c->out, d.data + off, len);
        sb_adds(&c->out, "<tool|>");
        sb_free(&d);
    }
    return 0;
}

/* ---- text helpers ------------------------------------------------------ */

static void add_stripped(strbuf *sb, const char *s, size_t n) {
    size_t off, len;
    cv_strip(s, n, &off, &len);
    sb_add(sb, s + off, len);
}

/* strip_thinking: drops every <|channel>...<channel|> span (and text after
 * an unclosed <|channel> up to the next <channel|>), then trims. */
static void add_strip_thinking(strbuf *sb, const char *s, size_t n) {
    static const char open[] = "<|channel>", close[] = "<channel|>";
    strbuf r = STRBUF_INIT;
    const char *end = s + n;
    for (const char *p = s;;) {
        const char *stop = memmem(p, (size_t)(end - p), close, sizeof close - 1);
        const char *part_end = stop ? stop : end;
        const char *o = memmem(p, (size_t)(part_end - p), open, sizeof open - 1);
        sb_add(&r, p, (size_t)((o ? o : part_end) - p));
        if (!stop) break;
        p = stop + sizeof close - 1;
    }
    add_stripped(sb, r.data ? r.data : "", r.len);
    if (r.oom) sb->oom = 1;
    sb_free(&r);
}

static const char *media_placeholder(const char *type) {
    if (!strcmp(type, "image") || !strcmp(type, "image_url")) return "<|image|>";
    if (!strcmp(type, "audio") || !strcmp(type, "input_audio")) return "<|audio|>";
    if (!strcmp(type, "video")) return "<|video|>";
    return NULL;
}

static const json_t *part_text(const json_t *part) { return cv_get(part, "text"); }
static const char *part_type(const json_t *part) {
    return json_string_value(cv_get(part, "type"));
}

/* ---- validation (the departures listed in chat_template.h) ------------- */

static int validate_parts(const json_t *parts, size_t mi, g4_err *err) {
    for (size_t k = 0; k < json_array_size(parts); k++) {
        const json_t *p = json_array_get(parts, k);
        const char *type = part_type(p);
        if (!json_is_object(p) || !type)
            return g4_errorf(err, "messages[%zu].content[%zu]: a content part must be an object "
                             "with a string \"type\"", mi, k);
        if (!strcmp(type, "text")) {
            if (!json_is_string(part_text(p)))
                return g4_errorf(err, "messages[%zu].content[%zu].text: must be a string", mi, k);
        } else if (!media_placeholder(type)) {
            return g4_errorf(err, "messages[%zu].content[%zu]: content part type '%s' is not "
                             "supported by the Gemma 4 template (text, image_url, input_audio, "
                             "image, audio, video)", mi, k, type);
        }
    }
    return 0;
}

static int validate_content(const json_t *m, size_t mi, g4_err *err) {
    const json_t *content = cv_get(m, "content");
    if (!content || json_is_null(content) || json_is_string(content)) return 0;
    if (json_is_array(content)) return validate_parts(content, mi, err);
    return g4_errorf(err, "messages[%zu].content: must be a string, a list of content parts or "
                     "null", mi);
}

static int validate_tool_calls(const json_t *m, size_t mi, g4_err *err) {
    const json_t *tcs = cv_get(m, "tool_calls");
    if (!cv_truthy(tcs)) return 0;
    if (!json_is_array(tcs)) return g4_errorf(err, "messages[%zu].tool_calls: must be a list", mi);
    for (size_t j = 0; j < json_array_size(tcs); j++) {
        const json_t *fn = cv_get(json_array_get(tcs, j), "function");
        if (!json_is_object(fn))
            return g4_errorf(err, "messages[%zu].tool_calls[%zu].function: missing or not an "
                             "object", mi, j);
        if (!json_is_string(cv_get(fn, "name")))
            return g4_errorf(err, "messages[%zu].tool_calls[%zu].function.name: must be a "
                             "string", mi, j);
    }
    return 0;
}

static int validate_legacy_responses(const json_t *m, size_t mi, g4_err *err) {
    const json_t *trs = cv_get(m, "tool_responses");
    if (!cv_truthy(trs)) return 0;
    if (!json_is_array(trs)) return g4_errorf(err, "messages[%zu].tool_responses: must be a list", mi);
    for (size_t j = 0; j < json_array_size(trs); j++) {
        const json_t *tr = json_array_get(trs, j);
        const json_t *name = cv_get(tr, "name");
        if (!json_is_object(tr) || !json_object_get(tr, "response"))
            return g4_errorf(err, "messages[%zu].tool_responses[%zu]: must be an object with a "
                             "\"response\"", mi, j);
        if (cv_truthy(name) && !json_is_string(name))
            return g4_errorf(err, "messages[%zu].tool_responses[%zu].name: must be a string", mi, j);
    }
    return 0;
}

static int validate_reasoning(const json_t *m, size_t mi, g4_err *err) {
    static const char *const keys[] = {"reasoning", "reasoning_content"};
    for (int k = 0; k < 2; k++) {
        const json_t *r = cv_get(m, keys[k]);
        if (cv_truthy(r) && !json_is_string(r))
            return g4_errorf(err, "messages[%zu].%s: must be a string", mi, keys[k]);
    }
    return 0;
}

static const char *role_of(const render_ctx *c, size_t mi) {
    return json_string_value(cv_get(json_array_get(c->msgs, mi), "role"));
}

static int validate_role(const json_t *m, size_t mi, g4_err *err) {
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    if (!json_is_object(m)) return g4_errorf(err, "messages[%zu]: must be an object", mi);
    const char *role = json_string_value(cv_get(m, "role"));
    if (!role) return g4_errorf(err, "messages[%zu].role: missing or not a string", mi);
    for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
        if (!strcmp(role, roles[k])) return 0;
    return g4_errorf(err, "messages[%zu].role: unknown role '%s' (expected system, developer, "
                     "user, assistant or tool)", mi, role);
}

/* A tool message is rendered only inside the forward scan of the nearest
 * non-tool message before it, and only when that one has tool_calls and no
 * legacy tool_responses; the template drops any other silently. */
static int validate_tool_message(const render_ctx *c, size_t mi, g4_err *err) {
    const json_t *m = json_array_get(c->msgs, mi);
    size_t j = mi;
    while (j > c->first && !strcmp(role_of(c, j - 1), "tool")) j--;
    const json_t *owner = j > c->first ? json_array_get(c->msgs, j - 1) : NULL;
    const json_t *tcs = cv_get(owner, "tool_calls");
    if (!owner || !cv_truthy(tcs) || cv_truthy(cv_get(owner, "tool_responses")))
        return g4_errorf(err, "messages[%zu]: role 'tool' message does not follow an assistant "
                         "message with tool_calls", mi);
    const json_t *name = cv_get(m, "name");
    if (cv_truthy(name) && !json_is_string(name))
        return g4_errorf(err, "messages[%zu].name: must be a string", mi);
    const json_t *id = cv_get(m, "tool_call_id");
    if (!id || json_is_null(id)) return 0;
    for (size_t k = 0; k < json_array_size(tcs); k++)
        if (cv_equal(cv_get(json_array_get(tcs, k), "id"), id)) return 0;
    strbuf s = STRBUF_INIT;
    cv_str(&s, id);
    g4_errorf(err, "messages[%zu].tool_call_id: '%s' matches no tool call of messages[%zu]", mi,
              s.data ? s.data : "", j - 1);
    sb_free(&s);
    return -1;
}

static int validate_messages(render_ctx *c) {
    for (size_t mi = 0; mi < c->n; mi++) {
        const json_t *m = json_array_get(c->msgs, mi);
        if (validate_role(m, mi, c->err) || validate_content(m, mi, c->err) ||
            validate_tool_calls(m, mi, c->err) || validate_legacy_responses(m, mi, c->err) ||
            validate_reasoning(m, mi, c->err))
            return -1;
    }
    for (size_t mi = c->first; mi < c->n; mi++)
        if (!strcmp(role_of(c, mi), "tool") && validate_tool_message(c, mi, c->err)) return -1;
    return 0;
}

/* ---- system block ------------------------------------------------------ */

static void render_system_content(render_ctx *c, const json_t *content) {
    if (json_is_string(content)) {
        add_stripped(&c->out, json_string_value(content), json_string_length(content));
        return;
    }
    /* every part adds its trimmed text (none for media) and one space */
    for (size_t k = 0; k < json_array_size(content); k++) {
        const json_t *text = part_text(json_array_get(content, k));
        if (text) add_stripped(&c->out, json_string_value(text), json_string_length(text));
        sb_addc(&c->out, ' ');
    }
}

static int render_system_block(render_ctx *c, const json_t *tools) {
    int has_system = c->first == 1;
    if (!c->thinking && !cv_truthy(tools) && !has_system) return 0;
    sb_adds(&c->out, "<|turn>system\n");
    if (c->thinking) {
        sb_adds(&c->out, "<|think|>\n");
        c->prev = PREV_THINK;
    }
    if (has_system) render_system_content(c, cv_get(json_array_get(c->msgs, 0), "content"));
    if (cv_truthy(tools)) {
        if (render_tools(c, tools)) return -1;
        c->prev = PREV_TOOL;
    }
    sb_adds(&c->out, "<turn|>\n");
    return 0;
}

/* ---- one message ------------------------------------------------------- */

static const json_t *loop_msg(const render_ctx *c, size_t i) {
    return json_array_get(c->msgs, c->first + i);
}

static void render_thinking(render_ctx *c, size_t i, const json_t *m) {
    const json_t *text = cv_get(m, "reasoning");
    if (!cv_truthy(text)) text = cv_get(m, "reasoning_content");
    int gate = (long)i > c->last_user || (c->preserve && cv_truthy(cv_get(m, "tool_calls")));
    if (!cv_truthy(text) || !gate) return;
    sb_adds(&c->out, "<|channel>thought\n");
    cv_str(&c->out, text);
    sb_adds(&c->out, "\n<channel|>");
}

/* The template accepts a mapping or null; OpenAI clients send a JSON string,
 * which Hugging Face callers json.loads first, and so do we. */
static int render_arguments(render_ctx *c, const json_t *args, size_t mi, size_t j) {
    json_t *parsed = NULL;
    if (json_is_string(args)) {
        json_error_t je;
        parsed = json_loadb(json_string_value(args), json_string_length(args),
                            JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!parsed)
            return g4_errorf(c->err, "messages[%zu].tool_calls[%zu].function.arguments: not "
                             "valid JSON (%s at column %d)", mi, j, je.text, je.column);
        args = parsed;
    }
    int rc = 0;
    if (json_is_object(args)) {
        size_t n;
        const char **keys = cv_sorted_keys(args, &n);
        for (size_t k = 0; k < n; k++) {
            if (k) sb_addc(&c->out, ',');
            sb_adds(&c->out, keys[k]);
            sb_addc(&c->out, ':');
            cv_format_argument(&c->out, json_object_get(args, keys[k]), 0);
        }
        free(keys);
    } else if (!json_is_null(args)) {
        rc = g4_errorf(c->err, "messages[%zu].tool_calls[%zu].function.arguments: must be a JSON "
                       "object (mapping) or a string holding one", mi, j);
    }
    json_decref(parsed);
    return rc;
}

static int render_tool_calls(render_ctx *c, const json_t *tcs, size_t mi) {
    for (size_t j = 0; j < json_array_size(tcs); j++) {
        const json_t *fn = cv_get(json_array_get(tcs, j), "function");
        sb_adds(&c->out, "<|tool_call>call:");
        cv_str(&c->out, cv_get(fn, "name"));
        sb_addc(&c->out, '{');
        if (render_arguments(c, cv_get(fn, "arguments"), mi, j)) return -1;
        sb_adds(&c->out, "}<tool_call|>");
    }
    c->prev = PREV_TOOL_CALL;
    return 0;
}

/* format_tool_response_block */
static void response_block(strbuf *sb, const json_t *name, const json_t *resp) {
    sb_adds(sb, "<|tool_response>response:");
    cv_str(sb, name);
    if (json_is_object(resp)) {
        cv_format_argument(sb, resp, 0); /* {k:v,...}, the same shape */
    } else {
        sb_adds(sb, "{value:");
        cv_format_argument(sb, resp ? resp : json_null(), 0);
        sb_addc(sb, '}');
    }
    sb_adds(sb, "<tool_response|>");
}

static void render_legacy_responses(render_ctx *c, const json_t *trs) {
    json_t *unknown = json_string("unknown");
    for (size_t j = 0; j < json_array_size(trs); j++) {
        const json_t *tr = json_array_get(trs, j);
        const json_t *name = cv_get(tr, "name");
        response_block(&c->out, cv_truthy(name) ? name : unknown, json_object_get(tr, "response"));
    }
    json_decref(unknown);
    c->prev = PREV_TOOL_RESPONSE;
}

/* A role:tool body given as content parts: the text parts joined, then a
 * placeholder per media part. */
static void render_tool_parts(render_ctx *c, const json_t *name, const json_t *parts) {
    strbuf text = STRBUF_INIT;
    for (size_t k = 0; k < json_array_size(parts); k++) {
        const json_t *p = json_array_get(parts, k);
        if (!strcmp(part_type(p), "text"))
            sb_add(&text, json_string_value(part_text(p)), json_string_length(part_text(p)));
    }
    json_t *joined = json_stringn(text.data ? text.data : "", text.len);
    response_block(&c->out, name, joined);
    json_decref(joined);
    sb_free(&text);
    for (size_t k = 0; k < json_array_size(parts); k++) {
        const char *ph = media_placeholder(part_type(json_array_get(parts, k)));
        if (ph) sb_adds(&c->out, ph);
    }
}

/* The forward scan over the role:tool messages right after message i; the
 * name comes from the call whose id equals tool_call_id (the last such call
 * wins, and a missing id equals a missing id), else the message's name. */
static int render_tool_messages(render_ctx *c, size_t i, const json_t *tcs) {
    json_t *unknown = json_string("unknown");
    int found = 0;
    for (size_t k = i + 1; k < c->n - c->first; k++) {
        const json_t *f = loop_msg(c, k);
        if (!str_eq(cv_get(f, "role"), "tool")) break;
        const json_t *name = cv_truthy(cv_get(f, "name")) ? cv_get(f, "name") : unknown;
        for (size_t j = 0; j < json_array_size(tcs); j++) {
            const json_t *tc = json_array_get(tcs, j);
            if (cv_equal(cv_get(tc, "id"), cv_get(f, "tool_call_id")))
                name = cv_get(cv_get(tc, "function"), "name");
        }
        const json_t *body = cv_get(f, "content");
        if (json_is_array(body)) render_tool_parts(c, name, body);
        else response_block(&c->out, name, body);
        found = 1;
        c->prev = PREV_TOOL_RESPONSE;
    }
    json_decref(unknown);
    return found;
}

/* captured_content: model text loses its thinking spans, other text is
 * trimmed, media parts become placeholders. */
static void render_content(strbuf *sb, const json_t *m, int is_model) {
    const json_t *content = cv_get(m, "content");
    if (json_is_string(content)) {
        if (is_model) add_strip_thinking(sb, json_string_value(content), json_string_length(content));
        else add_stripped(sb, json_string_value(content), json_string_length(content));
        return;
    }
    for (size_t k = 0; k < json_array_size(content); k++) {
        const json_t *p = json_array_get(content, k);
        const json_t *text = part_text(p);
        if (!strcmp(part_type(p), "text")) {
            if (is_model) add_strip_thinking(sb, json_string_value(text), json_string_length(text));
            else add_stripped(sb, json_string_value(text), json_string_length(text));
        } else {
            sb_adds(sb, media_placeholder(part_type(p)));
        }
    }
}

/* next_nt: the role of the first non-tool message after loop index i. */
static const char *next_non_tool_role(const render_ctx *c, size_t i) {
    for (size_t j = i + 1; j < c->n - c->first; j++) {
        const char *r = json_string_value(cv_get(loop_msg(c, j), "role"));
        if (strcmp(r, "tool")) return r;
    }
    return NULL;
}

static void close_message(render_ctx *c, size_t i, int is_model, int has_calls, int tr_flag,
                          int has_content) {
    const char *next = next_non_tool_role(c, i);
    int continues_into_next =
        is_model && next && !strcmp(next, "assistant") && (!has_calls || tr_flag);
    if (c->prev == PREV_TOOL_CALL && !tr_flag)
        sb_adds(&c->out, "<|tool_response>"); /* the model's stop token: it awaits results */
    else if (continues_into_next)
        ;
    else if (!(tr_flag && !has_content && !next))
        sb_adds(&c->out, "<turn|>\n");
}

static int render_message(render_ctx *c, size_t i) {
    const json_t *m = loop_msg(c, i);
    const char *role = json_string_value(cv_get(m, "role"));
    int is_model = !strcmp(role, "assistant");
    c->prev = PREV_NONE;
    if (!(is_model && c->prev_role && !strcmp(c->prev_role, "assistant"))) {
        sb_adds(&c->out, "<|turn>");
        sb_adds(&c->out, is_model ? "model" : role);
        sb_addc(&c->out, '\n');
    }
    render_thinking(c, i, m);
    const json_t *tcs = cv_get(m, "tool_calls");
    int has_calls = cv_truthy(tcs), tr_flag = 0;
    if (has_calls && render_tool_calls(c, tcs, c->first + i)) return -1;
    if (cv_truthy(cv_get(m, "tool_responses"))) {
        render_legacy_responses(c, cv_get(m, "tool_responses"));
        tr_flag = 1;
    } else if (has_calls) {
        tr_flag = render_tool_messages(c, i, tcs);
    }
    strbuf captured = STRBUF_INIT;
    render_content(&captured, m, is_model);
    size_t off, len;
    cv_strip(captured.data ? captured.data : "", captured.len, &off, &len);
    sb_add(&c->out, captured.data ? captured.data : "", captured.len);
    if (captured.oom) c->out.oom = 1;
    sb_free(&captured);
    close_message(c, i, is_model, has_calls, tr_flag, len > 0);
    c->prev_role = role;
    return 0;
}

/* ---- the whole prompt -------------------------------------------------- */

static void render_generation_prompt(render_ctx *c) {
    if (!c->gen_prompt) return;
    if (c->prev != PREV_TOOL_RESPONSE && c->prev != PREV_TOOL_CALL) {
        sb_adds(&c->out, "<|turn>model\n");
        if (!c->thinking && c->variant == CHAT_TMPL_MAINLINE)
            sb_adds(&c->out, "<|channel>thought\n<channel|>");
    } else if (c->prev == PREV_TOOL_RESPONSE && c->thinking) {
        sb_adds(&c->out, "<|channel>thought\n");
    }
}

static int read_options(render_ctx *c, const json_t *req) {
    const json_t *kw = cv_get(req, "chat_template_kwargs");
    if (kw && !json_is_object(kw) && !json_is_null(kw))
        return g4_errorf(c->err, "chat_template_kwargs: must be an object");
    c->thinking = cv_truthy(cv_get(kw, "enable_thinking"));
    c->preserve = cv_truthy(cv_get(kw, "preserve_thinking"));
    const json_t *agp = cv_get(req, "add_generation_prompt");
    c->gen_prompt = agp ? cv_truthy(agp) : 1;
    return 0;
}

static int setup(render_ctx *c, const json_t *req) {
    if (!json_is_object(req)) return g4_errorf(c->err, "request: must be a JSON object");
    c->msgs = cv_get(req, "messages");
    if (!json_is_array(c->msgs)) return g4_errorf(c->err, "messages: missing or not a list");
    c->n = json_array_size(c->msgs);
    if (read_options(c, req)) return -1;
    const json_t *m0 = json_array_get(c->msgs, 0);
    if (str_eq(cv_get(m0, "role"), "system") || str_eq(cv_get(m0, "role"), "developer"))
        c->first = 1;
    if (c->n && validate_messages(c)) return -1;
    c->last_user = -1;
    for (size_t i = 0; i + c->first < c->n; i++)
        if (str_eq(cv_get(loop_msg(c, i), "role"), "user")) c->last_user = (long)i;
    return 0;
}

char *chat_render(const json_t *request, chat_variant variant, size_t *len, g4_err *err) {
    render_ctx c = {.out = STRBUF_INIT, .variant = variant, .err = err};
    if (variant != CHAT_TMPL_MAINLINE && variant != CHAT_TMPL_E2B_E4B) {
        g4_errorf(err, "chat template: unsupported variant");
        return NULL;
    }
    if (setup(&c, request)) goto fail;
    sb_adds(&c.out, "<bos>");
    if (render_system_block(&c, cv_get(request, "tools"))) goto fail;
    for (size_t i = 0; i + c.first < c.n; i++)
        if (strcmp(role_of(&c, c.first + i), "tool") && render_message(&c, i)) goto fail;
    render_generation_prompt(&c);
    if (c.out.oom) {
        g4_errorf(err, "chat template: out of memory");
        goto fail;
    }
    return sb_take(&c.out, len);
fail:
    sb_free(&c.out);
    return NULL;
}
