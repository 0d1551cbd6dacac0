/* g4 tokenize: text -> token ids (and back with --decode) from the command
 * line; the conformance tests against HF tokenizers drive it with --jsonl. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/commands.h"
#include "text/detok.h"
#include "text/tokenizer.h"

typedef struct {
    const char *path;
    char path_buf[4096];
    bool add_bos, jsonl, decode, stream, skip_special, bench;
} tk_opts;

static void tk_usage(FILE *out) {
    fprintf(out,
            "usage: g4 tokenize (--model-path DIR | --tokenizer FILE) [--add-bos] [--jsonl]\n"
            "                   [--decode [--stream] [--skip-special]] [--bench]\n"
            "  Text on stdin -> ids on one line, space separated.\n"
            "  --jsonl         each input line is a JSON string (or {\"hex\": \"...\"} for raw bytes,\n"
            "                  e.g. invalid UTF-8); each output line is a JSON array of ids\n"
            "  --add-bos       put the BOS id first\n"
            "  --decode        the reverse: ids (with --jsonl, a JSON array per line) -> text\n"
            "                  (with --jsonl, a JSON string per line)\n"
            "  --stream        decode with the streaming detokenizer, one id at a time\n"
            "  --skip-special  leave special tokens out of decoded text\n"
            "  --bench         print load time and encode throughput (one thread) over the input\n");
}

static int tk_parse(int argc, char **argv, tk_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--tokenizer") && has_val) o->path = argv[++i];
        else if (!strcmp(a, "--model-path") && has_val) {
            snprintf(o->path_buf, sizeof o->path_buf, "%s/tokenizer.json", argv[++i]);
            o->path = o->path_buf;
        } else if (!strcmp(a, "--add-bos")) o->add_bos = true;
        else if (!strcmp(a, "--jsonl")) o->jsonl = true;
        else if (!strcmp(a, "--decode")) o->decode = true;
        else if (!strcmp(a, "--stream")) o->stream = true;
        else if (!strcmp(a, "--skip-special")) o->skip_special = true;
        else if (!strcmp(a, "--bench")) o->bench = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) return tk_usage(stdout), 1;
        else return fprintf(stderr, "g4 tokenize: unknown or incomplete option '%s'\n", a), tk_usage(stderr), 2;
    }
    if (!o->path) return fprintf(stderr, "g4 tokenize: give --model-path or --tokenizer\n"), tk_usage(stderr), 2;
    return 0;
}

static char *tk_read_all(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            char *b2 = realloc(buf, cap *= 2);
            if (!b2) free(buf);
            buf = b2;
        }
    }
    *n = len;
    return buf;
}

static void tk_print_ids(const int32_t *ids, size_t n, bool json) {
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? (json ? ",%d" : " %d") : "%d", ids[i]);
    puts(json ? "]" : "");
}

/* One --jsonl input line: a JSON string, or {"hex": "..."} for raw bytes. */
static char *tk_json_text(const char *line, size_t *n, g4_err *err) {
    json_error_t jerr;
    json_t *v = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    char *out = NULL;
    const char *hex = json_string_value(json_object_get(v, "hex"));
    if (json_is_string(v)) {
        *n = json_string_length(v);
        if ((out = malloc(*n + 1))) memcpy(out, json_string_value(v), *n + 1);
    } else if (hex && strlen(hex) % 2 == 0 && (out = malloc(strlen(hex) / 2 + 1))) {
        *n = strlen(hex) / 2;
        for (size_t i = 0; i < *n; i++) {
            unsigned b;
            if (sscanf(hex + 2 * i, "%2x", &b) != 1) { free(out), out = NULL; break; }
            out[i] = (char)b;
        }
    }
    if (!out) g4_errorf(err, "expected a JSON string or {\"hex\": ...}: %s", v ? "wrong type" : jerr.text);
    json_decref(v);
    return out;
}

/* Parses ids: a JSON array with --jsonl, else whitespace-separated numbers. */
static int32_t *tk_parse_ids(const char *s, bool json, size_t *n) {
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    for (const char *p = s + (json ? strspn(s, " \t[") : 0); ids && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (*n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (ids) ids[(*n)++] = (int32_t)v;
        p = end + strspn(end, json ? " ,\t\r\n" : " \t\r\n");
    }
    return ids;
}

static char *tk_decode(const tok_tokenizer *tok, const tk_opts *o, const int32_t *ids, size_t n, size_t *len_out) {
    if (!o->stream) return tok_decode(tok, ids, n, o->skip_special, len_out);
    detok *d = detok_create(tok, o->skip_special);
    size_t cap = 64, len = 0, k;
    char *text = malloc(cap);
    const char *part;
    for (size_t i = 0; d && text && i <= n; i++) {
        int rc = i < n ? detok_feed(d, ids + i, 1, &part, &k, NULL) : detok_flush(d, &part, &k, NULL);
        if (rc) { free(text), text = NULL; break; }
        while (len + k + 1 > cap) text = realloc(text, cap *= 2);
        if (!text) break;
        memcpy(text + len, part, k + 1);
        len += k;
    }
    detok_free(d);
    *len_out = len;
    return text;
}

static int tk_emit_text(const char *text, size_t len, bool json) {
    if (!json) return fwrite(text, 1, len, stdout), 0;
    json_t *s = json_stringn(text, len);
    char *dump = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    if (dump) puts(dump);
    free(dump);
    json_decref(s);
    return dump ? 0 : -1;
}

/* One unit of work: a line with --jsonl, else all of stdin. */
static int tk_process(const tok_tokenizer *tok, const tk_opts *o, const char *in, size_t n) {
    g4_err err = {{0}};
    if (o->decode) {
        size_t n_ids;
        int32_t *ids = tk_parse_ids(in, o->jsonl, &n_ids);
        size_t len = 0;
        char *text = ids ? tk_decode(tok, o, ids, n_ids, &len) : NULL;
        int rc = text ? tk_emit_text(text, len, o->jsonl) : -1;
        free(ids), free(text);
        if (rc) fprintf(stderr, "g4 tokenize: out of memory\n");
        return rc;
    }
    char *text = o->jsonl ? tk_json_text(in, &n, &err) : (char *)in;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = text ? tok_encode(tok, text, n, o->add_bos, &ids, &n_ids, &err) : -1;
    if (rc == 0) tk_print_ids(ids, n_ids, o->jsonl);
    else fprintf(stderr, "g4 tokenize: %s\n", err.msg);
    if (o->jsonl) free(text);
    free(ids);
    return rc;
}

static double tk_clock(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tk_now(void) { return tk_clock(CLOCK_MONOTONIC); }

/* CPU time of this thread: on a shared machine it is the steadier measure. */
static double tk_cpu(void) { return tk_clock(CLOCK_THREAD_CPUTIME_ID); }

/* Encodes every input (lines with --jsonl) until at least 2 s have passed. */
static int tk_bench(const tok_tokenizer *tok, const tk_opts *o, char *in, size_t n, double load_s, double load_cpu) {
    size_t n_in = 0, bytes = 0, tokens = 0, rounds = 0;
    char **texts = malloc((n + 1) * sizeof *texts);
    size_t *lens = malloc((n + 1) * sizeof *lens);
    g4_err err = {{0}};
    for (char *line = strtok(in, "\n"); o->jsonl && line; line = strtok(NULL, "\n"))
        if ((texts[n_in] = tk_json_text(line, &lens[n_in], &err))) n_in++;
    if (!o->jsonl) texts[0] = in, lens[0] = n, n_in = 1;
    double t0 = tk_now(), t1 = t0, c0 = tk_cpu(), first_cpu = 0;
    size_t first_bytes = 0;
    for (; t1 - t0 < 2.0; rounds++, t1 = tk_now()) {
        if (rounds == 1) first_cpu = tk_cpu() - c0, first_bytes = bytes;
        for (size_t i = 0; i < n_in; i++) {
            int32_t *ids;
            size_t k;
            if (tok_encode(tok, texts[i], lens[i], o->add_bos, &ids, &k, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
            bytes += lens[i], tokens += k;
            free(ids);
        }
    }
    double cpu = tk_cpu() - c0;
    /* the first round runs with a cold chunk cache, the later ones warm */
    printf("load %.3f s (cpu %.3f s); encode %zu inputs (%.2f MB) x %zu rounds: %.1f MB/s (cpu: %.1f MB/s; "
           "first round %.1f MB/s), %.2f M tokens/s, %.2f bytes/token\n",
           load_s, load_cpu, n_in, first_bytes / 1e6, rounds, bytes / (t1 - t0) / 1e6, bytes / cpu / 1e6,
           first_cpu > 0 ? first_bytes / first_cpu / 1e6 : 0.0, tokens / (t1 - t0) / 1e6, (double)bytes / tokens);
    for (size_t i = 0; o->jsonl && i < n_in; i++) free(texts[i]);
    free(texts), free(lens);
    return 0;
}

static int tk_run_lines(const tok_tokenizer *tok, const tk_opts *o) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, stdin)) >= 0) rc = tk_process(tok, o, line, (size_t)len);
    free(line);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    tk_opts o = {0};
    int rc = tk_parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    g4_err err = {{0}};
    double t0 = tk_now(), c0 = tk_cpu();
    tok_tokenizer *tok = tok_load(o.path, &err);
    if (!tok) return fprintf(stderr, "g4 tokenize: %s\n", err.msg), 1;
    double load_s = tk_now() - t0, load_cpu = tk_cpu() - c0;
    size_t n = 0;
    char *in = NULL;
    if (o.bench || !o.jsonl) {
        in = tk_read_all(stdin, &n);
        rc = !in ? 1 : o.bench ? tk_bench(tok, &o, in, n, load_s, load_cpu) : tk_process(tok, &o, in, n) ? 1 : 0;
    } else {
        rc = tk_run_lines(tok, &o) ? 1 : 0;
    }
    free(in);
    tok_free(tok);
    return rc;
}
