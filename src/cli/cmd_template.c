/* g4 template: renders OpenAI chat requests into Gemma 4 prompts with the
 * native chat template, to check it against Jinja or to see what a request
 * becomes. The template file is only identified, never interpreted: an
 * unknown one is refused unless --allow-unknown-template says to render
 * with the built-in template anyway. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "text/chat_template.h"
#include "util/file.h"

static const char usage_text[] =
    "usage: g4 template (--model-path DIR | --chat-template FILE | --builtin NAME)\n"
    "                   [--jsonl] [--allow-unknown-template]\n"
    "\n"
    "Reads an OpenAI chat completion request (JSON) on stdin and writes the\n"
    "prompt the Gemma 4 chat template makes of it, byte for byte, on stdout.\n"
    "\n"
    "  --model-path DIR        use DIR/chat_template.jinja (or the chat_template\n"
    "                          of DIR/tokenizer_config.json)\n"
    "  --chat-template FILE    use this template file\n"
    "  --builtin NAME          no file: mainline (12B/26B-A4B/31B) or e2b_e4b\n"
    "  --jsonl                 one request per line in; one JSON string per line\n"
    "                          out ({\"error\": ...} for a request that fails)\n"
    "  --allow-unknown-template  render a template that is not one of Google's\n"
    "                          official Gemma 4 templates with the built-in one\n"
    "                          (--builtin NAME, default mainline), with a warning\n"
    "\n"
    "The template is rendered natively, not by a Jinja engine, so only the\n"
    "official templates (recognised by SHA-256) are supported.\n";

typedef struct {
    const char *model_path, *template_file, *builtin;
    int jsonl, allow_unknown;
} template_opts;

static int parse_opts(int argc, char **argv, template_opts *o) {
    static const struct option longopts[] = {
        {"model-path", required_argument, NULL, 'm'},
        {"chat-template", required_argument, NULL, 't'},
        {"builtin", required_argument, NULL, 'b'},
        {"jsonl", no_argument, NULL, 'j'},
        {"allow-unknown-template", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case 't': o->template_file = optarg; break;
        case 'b': o->builtin = optarg; break;
        case 'j': o->jsonl = 1; break;
        case 'a': o->allow_unknown = 1; break;
        case 'h': fputs(usage_text, stdout); exit(0);
        default: return -1;
        }
    }
    int sources = !!o->model_path + !!o->template_file;
    if (optind != argc || sources > 1 || (!sources && !o->builtin)) return -1;
    return 0;
}

static char *read_template(const template_opts *o, size_t *len, const char **src, g4_err *err) {
    if (o->model_path) return chat_read_model_template(o->model_path, len, src, err);
    *src = o->template_file;
    char *text = g4_read_file(o->template_file, len);
    if (!text) g4_errorf(err, "%s: cannot read", o->template_file);
    return text;
}

/* Which variant to render with, or CHAT_TMPL_UNKNOWN after an error message. */
static chat_variant choose_variant(const template_opts *o) {
    chat_variant fallback = o->builtin ? chat_variant_from_name(o->builtin) : CHAT_TMPL_MAINLINE;
    if (fallback == CHAT_TMPL_UNKNOWN) {
        fprintf(stderr, "g4 template: --builtin: unknown template '%s' (mainline, e2b_e4b)\n",
                o->builtin);
        return CHAT_TMPL_UNKNOWN;
    }
    if (!o->model_path && !o->template_file) return fallback;
    g4_err err;
    size_t len;
    const char *src;
    char *text = read_template(o, &len, &src, &err);
    if (!text) {
        fprintf(stderr, "g4 template: %s\n", err.msg);
        return CHAT_TMPL_UNKNOWN;
    }
    char sha[65];
    chat_variant v = chat_identify(text, len, sha);
    free(text);
    if (v != CHAT_TMPL_UNKNOWN) return v;
    fprintf(stderr, "g4 template: %s is not a supported Gemma 4 chat template (sha256 %s of the "
            "text without trailing whitespace). g4 renders Google's official 2026-07-09 "
            "templates natively and cannot run other Jinja templates.\n", src, sha);
    if (!o->allow_unknown) {
        fprintf(stderr, "g4 template: pass --allow-unknown-template to render with the built-in "
                "%s template instead\n", chat_variant_name(fallback));
        return CHAT_TMPL_UNKNOWN;
    }
    fprintf(stderr, "g4 template: warning: rendering with the built-in %s template instead\n",
            chat_variant_name(fallback));
    return fallback;
}

/* Renders one request's JSON text; returns the prompt or NULL with err. */
static char *render_text(const char *json, size_t n, chat_variant v, size_t *len, g4_err *err) {
    json_error_t je;
    json_t *req = json_loadb(json, n, JSON_ALLOW_NUL, &je);
    if (!req) {
        g4_errorf(err, "request is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                  je.column);
        return NULL;
    }
    char *prompt = chat_render(req, v, len, err);
    json_decref(req);
    return prompt;
}

static void print_json_line(json_t *v) {
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (s) puts(s);
    free(s);
    json_decref(v);
}

static int run_jsonl(chat_variant v) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int failed = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        g4_err err;
        size_t len;
        char *prompt = render_text(line, (size_t)n, v, &len, &err);
        if (prompt) print_json_line(json_stringn(prompt, len));
        else print_json_line(json_pack("{ss}", "error", err.msg)), failed = 1;
        free(prompt);
    }
    free(line);
    return failed;
}

static int run_single(chat_variant v) {
    char *in = NULL;
    size_t in_len = 0;
    FILE *mem = open_memstream(&in, &in_len);
    char buf[8192];
    size_t n;
    while (mem && (n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, mem);
    if (mem) fclose(mem);
    g4_err err;
    size_t len;
    char *prompt = in ? render_text(in, in_len, v, &len, &err) : NULL;
    if (!in) snprintf(err.msg, sizeof err.msg, "cannot read stdin");
    free(in);
    if (!prompt) {
        fprintf(stderr, "g4 template: %s\n", err.msg);
        return 1;
    }
    fwrite(prompt, 1, len, stdout);
    free(prompt);
    return 0;
}

int cmd_template(int argc, char **argv) {
    template_opts o = {0};
    if (parse_opts(argc, argv, &o)) {
        fputs(usage_text, stderr);
        return 2;
    }
    chat_variant v = choose_variant(&o);
    if (v == CHAT_TMPL_UNKNOWN) return 1;
    return o.jsonl ? run_jsonl(v) : run_single(v);
}
