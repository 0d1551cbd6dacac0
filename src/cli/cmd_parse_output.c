/* g4 parse-output: splits a model's raw generated text (stdin) into content,
 * reasoning and tool calls with the streaming output parser, and prints
 *   {"content": ..., "reasoning": ..., "tool_calls": [{"name", "arguments"}]}
 * As in OpenAI replies, content is null when the model called tools and wrote
 * no text (otherwise a string, possibly ""); reasoning is null when there was
 * none; tool_calls is always an array; arguments is a JSON text in a string.
 * Call ids are random, so they are left out to keep the output reproducible. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "text/output_parser.h"

typedef struct {
    char *s;
    size_t n;
} str;

typedef struct {
    str content, reasoning;
    str names[64], args[64]; /* calls beyond 64 are counted but not kept */
    int ncalls;
} parsed;

static int str_add(str *b, const char *s, size_t n) {
    char *t = realloc(b->s, b->n + n + 1);
    if (!t) return -1;
    memcpy(t + b->n, s, n);
    b->s = t;
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

static int collect(parsed *r, const outp_deltas *d) {
    int rc = 0;
    for (size_t i = 0; i < d->n; i++) {
        const outp_delta *x = &d->v[i];
        int k = x->index;
        if (x->kind == OUTP_CONTENT) rc |= str_add(&r->content, x->text, x->len);
        else if (x->kind == OUTP_REASONING) rc |= str_add(&r->reasoning, x->text, x->len);
        else if (x->kind == OUTP_TOOL_START && k < 64) rc |= str_add(&r->names[k], x->name, strlen(x->name));
        else if (x->kind == OUTP_TOOL_ARGS && k < 64) rc |= str_add(&r->args[k], x->text, x->len);
        if (x->kind == OUTP_TOOL_START) r->ncalls = k + 1;
    }
    return rc;
}

static void parsed_free(parsed *r) {
    free(r->content.s);
    free(r->reasoning.s);
    for (int i = 0; i < 64; i++) { free(r->names[i].s); free(r->args[i].s); }
}

/* A JSON string, or null; NULL when s is not valid UTF-8. */
static json_t *jstr(const str *s, bool null_if_empty) {
    if (!s->n && null_if_empty) return json_null();
    return json_stringn(s->s ? s->s : "", s->n);
}

static json_t *to_json(const parsed *r) {
    json_t *o = json_object(), *calls = json_array();
    json_object_set_new(o, "content", jstr(&r->content, r->ncalls > 0));
    json_object_set_new(o, "reasoning", jstr(&r->reasoning, true));
    for (int i = 0; i < r->ncalls && i < 64; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "name", jstr(&r->names[i], false));
        json_object_set_new(c, "arguments", jstr(&r->args[i], false));
        json_array_append_new(calls, c);
    }
    json_object_set_new(o, "tool_calls", calls);
    return o;
}

/* Parses one output, fed in pieces as a server would, and prints it. */
static int parse_one(const char *text, size_t len, const outp_opts *opts, size_t flags) {
    outp *p = outp_create(opts);
    outp_deltas d = {0};
    parsed r = {0};
    int rc = p ? 0 : -1;
    for (size_t off = 0; !rc && off < len; off += 4096) {
        rc = outp_feed(p, text + off, len - off < 4096 ? len - off : 4096, &d);
        rc |= collect(&r, &d);
        outp_deltas_clear(&d);
    }
    if (!rc) rc = outp_finish(p, &d) | collect(&r, &d);
    if (rc) fprintf(stderr, "g4 parse-output: out of memory\n");
    json_t *o = rc ? NULL : to_json(&r);
    char *s = o ? json_dumps(o, flags) : NULL;
    if (!rc && !s) fprintf(stderr, "g4 parse-output: the text is not valid UTF-8\n");
    if (s) puts(s);
    free(s);
    json_decref(o);
    parsed_free(&r);
    outp_deltas_free(&d);
    outp_free(p);
    return s ? 0 : 1;
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) { free(buf); return NULL; }
            buf = t;
        }
    }
    *len = n;
    return buf;
}

static int run_jsonl(const outp_opts *opts) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0, lineno = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)n) continue;
        json_error_t e;
        json_t *j = json_loadb(line, (size_t)n, JSON_DECODE_ANY, &e);
        if (!json_is_string(j)) {
            fprintf(stderr, "g4 parse-output: stdin line %d: not a JSON string (%s)\n", lineno,
                    j ? "other JSON value" : e.text);
            rc = 1;
        } else {
            rc |= parse_one(json_string_value(j), json_string_length(j), opts, JSON_COMPACT);
        }
        json_decref(j);
    }
    free(line);
    return rc;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: g4 parse-output [--enable-thinking] [--no-tools] [--in-reasoning] [--jsonl]\n"
            "  Reads a model's raw generated text (special tokens as text) on stdin and\n"
            "  prints {\"content\", \"reasoning\", \"tool_calls\": [{\"name\", \"arguments\"}]}.\n"
            "  --enable-thinking  the prompt enabled thinking\n"
            "  --no-tools         the request had no tools (bare \"call:\" is plain text)\n"
            "  --in-reasoning     the prompt ended inside an open <|channel>\n"
            "  --jsonl            each stdin line is a JSON string; one object per line out\n");
}

int cmd_parse_output(int argc, char **argv) {
    outp_opts opts = {.tools_enabled = true};
    bool jsonl = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--enable-thinking")) opts.enable_thinking = true;
        else if (!strcmp(argv[i], "--no-tools")) opts.tools_enabled = false;
        else if (!strcmp(argv[i], "--in-reasoning")) opts.in_reasoning = true;
        else if (!strcmp(argv[i], "--jsonl")) jsonl = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        else { fprintf(stderr, "g4 parse-output: unknown option '%s'\n", argv[i]); usage(stderr); return 2; }
    }
    if (jsonl) return run_jsonl(&opts);
    size_t len;
    char *text = read_all(stdin, &len);
    if (!text) { fprintf(stderr, "g4 parse-output: out of memory reading stdin\n"); return 1; }
    int rc = parse_one(text, len, &opts, JSON_INDENT(2));
    free(text);
    return rc;
}
