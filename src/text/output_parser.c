/* The Gemma 4 output parser (see output_parser.h for the grammar and the
 * choices made on malformed and truncated output).
 *
 * Design: the parser keeps the unconsumed input and repeatedly runs one
 * step for its state. A step looks at the text from the current position and
 * either consumes bytes (emitting deltas), changes state without consuming,
 * or answers NEED_MORE when what it sees could still be the start of a
 * delimiter. A step only consumes what no later text could change, which is
 * why the output does not depend on how the input was chunked. At the end,
 * the steps run once more with `final` set, where a possible prefix counts as
 * plain text.
 *
 * Tool arguments are converted to JSON as they stream: a stack of open
 * objects/arrays, with a member's comma and key written only when its value
 * starts (so a trailing comma or a key cut off by truncation never reaches
 * the output), strings escaped as they arrive, and bare values (numbers,
 * true, ...) held until their end, since "tru" or "1." may still change type.
 * Every input keeps the emitted prefix completable, so a call can always be
 * closed into valid JSON. */
#include "text/output_parser.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NEED_MORE (-1)
#define MAX_DEPTH 64    /* nesting deeper than this is read as bare text */
#define MAX_NAME 128    /* a longer "name" is not a function name */

/* ---- growable byte buffer ---------------------------------------------- */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static bool sb_reserve(char **s, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    char *t = realloc(*s, c);
    if (!t) return false;
    *s = t;
    *cap = c;
    return true;
}

/* Appends and keeps a NUL after the bytes; false when out of memory. */
static bool sb_add(sbuf *b, const char *s, size_t n) {
    if (!sb_reserve(&b->s, &b->cap, b->n + n + 1)) return false;
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return true;
}

static void sb_clear(sbuf *b) {
    b->n = 0;
    if (b->s) b->s[0] = 0;
}

/* ---- the parser --------------------------------------------------------- */

enum { S_CONTENT, S_REASONING, S_PREAMBLE, S_NAME, S_ARGS };

/* Sub-states inside tool arguments. */
enum { A_KEY_WAIT, A_KEY, A_VAL_WAIT, A_STR, A_JSTR, A_BARE, A_AFTER_VAL };

typedef struct {
    char closer; /* the source character that closes it: '}', ')' or ']' */
    bool is_obj;
    int count;   /* members written so far (a comma goes before the next) */
} frame;

struct outp {
    outp_opts opts;
    bool oom;
    int state, sub;
    bool call_ok;        /* a bare "call:NAME{" here is a tool call */
    bool said[2];        /* some content / reasoning was emitted (by outp_kind) */
    bool label_pending;  /* reasoning just opened: drop a "thought\n" label */
    bool implicit_start; /* thinking on, nothing read: "thought\n" opens reasoning */
    bool in_block;       /* between <|tool_call> and <tool_call|> */
    bool name_gap;       /* whitespace after the function name */
    int block_calls;     /* calls completed in the current block */
    int ncalls;
    uint64_t rng;
    sbuf in;             /* input; in.s[pos..] is not consumed yet */
    size_t pos;
    sbuf ws;             /* whitespace held back in content or reasoning */
    sbuf name, raw;      /* function name; its source text for the fallback */
    sbuf key, bare;      /* pending object key; pending bare value */
    frame stack[MAX_DEPTH];
    int depth;
};

typedef int (*step_fn)(outp *p, const char *s, size_t n, bool final, outp_deltas *out);

/* ---- deltas -------------------------------------------------------------- */

void outp_deltas_clear(outp_deltas *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].text);
        free(d->v[i].name);
    }
    d->n = 0;
}

void outp_deltas_free(outp_deltas *d) {
    outp_deltas_clear(d);
    free(d->v);
    d->v = NULL;
    d->cap = 0;
}

static outp_delta *push_delta(outp *p, outp_deltas *out, outp_kind kind, int index) {
    if (out->n == out->cap) {
        size_t c = out->cap ? out->cap * 2 : 8;
        outp_delta *v = realloc(out->v, c * sizeof *v);
        if (!v) { p->oom = true; return NULL; }
        out->v = v;
        out->cap = c;
    }
    outp_delta *d = &out->v[out->n++];
    memset(d, 0, sizeof *d);
    d->kind = kind;
    d->index = index;
    return d;
}

/* Appends text to the last delta when it has the same kind and index. */
static void emit(outp *p, outp_deltas *out, outp_kind kind, int index, const char *s, size_t n) {
    if (!n || p->oom) return;
    outp_delta *d = out->n ? &out->v[out->n - 1] : NULL;
    if (!d || d->kind != kind || d->index != index) d = push_delta(p, out, kind, index);
    if (!d || !sb_reserve(&d->text, &d->cap, d->len + n + 1)) { p->oom = true; return; }
    memcpy(d->text + d->len, s, n);
    d->len += n;
    d->text[d->len] = 0;
}

static void emit_args(outp *p, outp_deltas *out, const char *s, size_t n) {
    emit(p, out, OUTP_TOOL_ARGS, p->ncalls - 1, s, n);
}

static void emit_args_str(outp *p, outp_deltas *out, const char *s) {
    emit_args(p, out, s, strlen(s));
}

/* Writes s as the inside of a JSON string. Bytes >= 0x80 pass through. */
static void emit_escaped(outp *p, outp_deltas *out, const char *s, size_t n) {
    char buf[256];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k > sizeof buf - 8) { emit_args(p, out, buf, k); k = 0; }
        if (c == '"' || c == '\\') { buf[k++] = '\\'; buf[k++] = (char)c; }
        else if (c == '\n') { buf[k++] = '\\'; buf[k++] = 'n'; }
        else if (c == '\r') { buf[k++] = '\\'; buf[k++] = 'r'; }
        else if (c == '\t') { buf[k++] = '\\'; buf[k++] = 't'; }
        else if (c < 0x20) k += (size_t)snprintf(buf + k, 8, "\\u%04x", c);
        else buf[k++] = (char)c;
    }
    emit_args(p, out, buf, k);
}

/* ---- lexical helpers ---------------------------------------------------- */

enum { T_CH_OPEN, T_CH_CLOSE, T_TC_OPEN, T_TC_CLOSE, T_QUOTE,
       T_TURN_END, T_TURN_OPEN, T_EOS, T_TR_OPEN, T_TR_CLOSE, T_COUNT };

static const char *const tokens[T_COUNT] = {
    "<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|\"|>",
    "<turn|>", "<|turn>", "<eos>", "<|tool_response>", "<tool_response|>",
};

#define M_NONE (-1)
#define M_PARTIAL (-2)

/* Which special token s starts with; M_PARTIAL when s (all of it) is a
 * proper prefix of one and more text may come. */
static int match_token(const char *s, size_t n, bool final) {
    bool partial = false;
    for (int t = 0; t < T_COUNT; t++) {
        size_t len = strlen(tokens[t]);
        if (n >= len && !memcmp(s, tokens[t], len)) return t;
        if (n < len && !memcmp(s, tokens[t], n)) partial = true;
    }
    return partial && !final ? M_PARTIAL : M_NONE;
}

static int token_len(int t) { return (int)strlen(tokens[t]); }

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}

static bool is_closer(char c) { return c == '}' || c == ']' || c == ')'; }

/* Length of "call:NAME{" (or "call:NAME (") at s; 0 when s is not one, or
 * NEED_MORE when the text ends before that is known. */
static int bare_call_len(const char *s, size_t n, bool final) {
    static const char lit[] = "call:";
    size_t i = 0;
    for (; i < 5; i++) {
        if (i == n) return final ? 0 : NEED_MORE;
        if (s[i] != lit[i]) return 0;
    }
    size_t name = 0;
    for (; i < n && is_name_char(s[i]); i++)
        if (++name > MAX_NAME) return 0;
    while (i < n && name && (s[i] == ' ' || s[i] == '\t')) i++;
    if (i == n) return final ? 0 : NEED_MORE;
    return name && (s[i] == '{' || s[i] == '(') ? (int)i + 1 : 0;
}

/* ---- content and reasoning ---------------------------------------------- */

static outp_kind text_kind(const outp *p) {
    return p->state == S_REASONING ? OUTP_REASONING : OUTP_CONTENT;
}

/* Emits text of the current kind, preceded by the held whitespace. */
static void emit_text(outp *p, outp_deltas *out, const char *s, size_t n) {
    outp_kind kind = text_kind(p);
    if (p->said[kind]) emit(p, out, kind, -1, p->ws.s, p->ws.n); /* else leading ws */
    sb_clear(&p->ws);
    emit(p, out, kind, -1, s, n);
    p->said[kind] = true;
    p->call_ok = false;
}

static int hold_ws(outp *p, const char *s, size_t n) {
    size_t k = 0;
    while (k < n && is_ws(s[k])) {
        if (s[k] == '\n') p->call_ok = true; /* a bare call may start a line */
        k++;
    }
    if (!sb_add(&p->ws, s, k)) p->oom = true;
    return (int)k;
}

/* The "thought\n" label after <|channel>, or at the very start when thinking
 * is on (then it also opens the reasoning the model forgot to mark). */
static int step_label(outp *p, const char *s, size_t n, bool final) {
    static const char label[] = "thought\n";
    size_t m = n < 8 ? n : 8;
    bool prefix = !memcmp(s, label, m);
    if (prefix && m < 8 && !final) return NEED_MORE;
    bool implicit = p->implicit_start;
    p->implicit_start = p->label_pending = false;
    if (prefix && m == 8) {
        if (implicit) p->state = S_REASONING;
        return 8;
    }
    if (implicit) return 0;
    if (prefix) return (int)n; /* output ends inside the label */
    if (n > 7 && !memcmp(s, label, 7) && s[7] == '<') return 7;
    return 0;
}

static void enter_block(outp *p) {
    p->state = S_PREAMBLE;
    p->in_block = true;
    p->block_calls = 0;
}

static void on_text_token(outp *p, int t, outp_deltas *out) {
    if (t == T_QUOTE) { emit_text(p, out, "\"", 1); return; }
    sb_clear(&p->ws); /* whitespace before any delimiter is dropped */
    switch (t) {
    case T_CH_OPEN:
        if (p->state == S_CONTENT) p->label_pending = true;
        p->state = S_REASONING;
        break;
    case T_CH_CLOSE: /* also a stray one in content */
        p->state = S_CONTENT;
        p->call_ok = true;
        break;
    case T_TC_OPEN: enter_block(p); break;
    case T_TC_CLOSE: p->call_ok = true; break; /* stray */
    default: break;                           /* end-of-turn markers */
    }
}

static void begin_name(outp *p, const char *prefix) {
    p->state = S_NAME;
    p->name_gap = false;
    sb_clear(&p->name);
    sb_clear(&p->raw);
    if (!sb_add(&p->raw, prefix, strlen(prefix))) p->oom = true;
}

static int step_text(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    if (p->implicit_start || p->label_pending) return step_label(p, s, n, final);
    if (s[0] == '<') {
        int t = match_token(s, n, final);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t == M_NONE) { emit_text(p, out, s, 1); return 1; }
        on_text_token(p, t, out);
        return token_len(t);
    }
    if (is_ws(s[0])) return hold_ws(p, s, n);
    if (p->call_ok && p->opts.tools_enabled) {
        int r = bare_call_len(s, n, final);
        if (r == NEED_MORE) return NEED_MORE;
        if (r > 0) {
            sb_clear(&p->ws);
            p->in_block = false;
            begin_name(p, "call:");
            return 5;
        }
    }
    size_t k = 1;
    while (k < n && s[k] != '<' && !is_ws(s[k])) k++;
    emit_text(p, out, s, k);
    return (int)k;
}

/* ---- tool-call block and function name ---------------------------------- */

static void leave_block(outp *p) {
    p->in_block = false;
    p->state = S_CONTENT;
    p->call_ok = true;
}

/* After <|tool_call> or after a call inside a block. */
static int step_preamble(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    char c = s[0];
    if (is_ws(c)) return 1;
    if (c == '<') {
        int t = match_token(s, n, final);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t == T_TC_CLOSE) { leave_block(p); return token_len(t); }
        if (t != M_NONE) { leave_block(p); return 0; }
    }
    size_t m = n < 5 ? n : 5;
    if (!memcmp(s, "call:", m)) {
        if (m == 5) { begin_name(p, "call:"); return 5; }
        if (!final) return NEED_MORE;
    }
    if (c == ':') { begin_name(p, ":"); return 1; }
    if (is_name_char(c) && p->block_calls == 0) { begin_name(p, ""); return 0; }
    /* Debris after a finished call (a doubled brace, a separator) is dropped;
     * anything else means the model left the block without closing it. */
    if (p->block_calls > 0 && strchr("})],;", c)) return 1;
    leave_block(p);
    return 0;
}

static void start_call(outp *p, outp_deltas *out) {
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    outp_delta *d = push_delta(p, out, OUTP_TOOL_START, p->ncalls++);
    if (!d) return;
    d->name = strdup(p->name.s);
    if (!d->name) p->oom = true;
    memcpy(d->id, "call_", 5);
    for (int i = 0; i < 24; i++) {
        uint64_t z = (p->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        d->id[5 + i] = b62[(z ^ (z >> 31)) % 62];
    }
    d->id[29] = 0;
}

static void end_call(outp *p) {
    p->depth = 0;
    p->block_calls++;
    if (p->in_block) {
        p->state = S_PREAMBLE;
    } else {
        p->state = S_CONTENT;
        p->call_ok = true;
    }
}

/* Not a call after all: its source text goes out as content. */
static int name_fallback(outp *p, outp_deltas *out) {
    p->state = S_CONTENT;
    p->in_block = false;
    emit_text(p, out, p->raw.s, p->raw.n);
    return 0;
}

static void args_open(outp *p, outp_deltas *out, char closer) {
    p->state = S_ARGS;
    p->sub = A_KEY_WAIT;
    p->depth = 1;
    p->stack[0] = (frame){closer, true, 0};
    emit_args(p, out, "{", 1);
}

static int step_name(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    char c = s[0];
    if (is_name_char(c)) {
        if (p->name_gap || p->name.n >= MAX_NAME) return name_fallback(p, out);
        if (!sb_add(&p->name, s, 1) || !sb_add(&p->raw, s, 1)) p->oom = true;
        return 1;
    }
    if (c == ' ' || c == '\t') {
        p->name_gap = p->name.n > 0;
        if (!sb_add(&p->raw, s, 1)) p->oom = true;
        return 1;
    }
    if ((c == '{' || c == '(') && p->name.n) {
        start_call(p, out);
        args_open(p, out, c == '(' ? ')' : '}');
        return 1;
    }
    if (c == '<' && p->name.n) {
        int t = match_token(s, n, final);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t == T_TC_CLOSE) { /* "call:NAME<tool_call|>": no arguments */
            start_call(p, out);
            emit_args(p, out, "{}", 2);
            end_call(p);
            return 0;
        }
    }
    return name_fallback(p, out);
}

/* ---- tool arguments ------------------------------------------------------ */

static frame *top(outp *p) { return &p->stack[p->depth - 1]; }

/* Writes the comma and, in an object, the key before a value starts. */
static void begin_value(outp *p, outp_deltas *out) {
    frame *f = top(p);
    if (f->count++) emit_args(p, out, ",", 1);
    if (!f->is_obj) return;
    emit_args(p, out, "\"", 1);
    emit_escaped(p, out, p->key.s, p->key.n);
    emit_args(p, out, "\":", 2);
}

static int find_frame(const outp *p, char closer) {
    for (int i = p->depth - 1; i >= 0; i--)
        if (p->stack[i].closer == closer) return i;
    return -1;
}

static void pop_to(outp *p, outp_deltas *out, int level) {
    while (p->depth > level) {
        p->depth--;
        emit_args(p, out, p->stack[p->depth].is_obj ? "}" : "]", 1);
    }
    if (p->depth == 0) end_call(p);
    else p->sub = A_AFTER_VAL;
}

/* Closes up to the container that c closes; false when none does (a stray
 * closer, which the caller drops). */
static bool close_to(outp *p, outp_deltas *out, char c) {
    int i = find_frame(p, c);
    if (i < 0) return false;
    pop_to(p, out, i);
    return true;
}

static bool is_json_number(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i == n || s[i] < '0' || s[i] > '9') return false;
    if (s[i] == '0') i++;
    else while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i < n && s[i] == '.') {
        if (++i == n || s[i] < '0' || s[i] > '9') return false;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        if (++i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i == n || s[i] < '0' || s[i] > '9') return false;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    }
    return i == n;
}

/* The JSON for a bare value: a number or literal as is, else a string. */
static void emit_bare(outp *p, outp_deltas *out, const char *s, size_t n) {
    static const char *const lits[][2] = {
        {"true", "true"}, {"false", "false"}, {"null", "null"}, {"True", "true"},
        {"False", "false"}, {"None", "null"}, {"none", "null"}, {"nil", "null"},
    };
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++)
        if (strlen(lits[i][0]) == n && !memcmp(s, lits[i][0], n)) {
            emit_args_str(p, out, lits[i][1]);
            return;
        }
    if (is_json_number(s, n)) { emit_args(p, out, s, n); return; }
    emit_args(p, out, "\"", 1);
    emit_escaped(p, out, s, n);
    emit_args(p, out, "\"", 1);
}

static void finish_bare(outp *p, outp_deltas *out) {
    const char *s = p->bare.s ? p->bare.s : "";
    size_t n = p->bare.n;
    while (n && is_ws(s[n - 1])) n--;
    while (n && is_ws(*s)) { s++; n--; }
    begin_value(p, out);
    emit_bare(p, out, s, n);
    p->sub = A_AFTER_VAL;
}

/* The call ends early (another delimiter, or the end of the output): close
 * whatever is open so the arguments are valid JSON. */
static void args_abort(outp *p, outp_deltas *out) {
    if (p->sub == A_STR || p->sub == A_JSTR) emit_args(p, out, "\"", 1);
    if (p->sub == A_BARE) finish_bare(p, out);
    pop_to(p, out, 0);
}

/* Matches a token inside arguments; for anything but <|"|> the call ends. */
static int args_token(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    int t = match_token(s, n, final);
    if (t >= 0 && t != T_QUOTE) args_abort(p, out);
    return t;
}

static int args_key_wait(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    char c = s[0];
    if (c == '<') {
        int t = args_token(p, s, n, final, out);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t == T_QUOTE) return token_len(t); /* a quoted key */
        if (t >= 0) return 0;
    } else if (is_closer(c)) {
        close_to(p, out, c);
        return 1;
    }
    if (is_ws(c) || strchr(",\"{[:=", c)) return 1; /* nothing a key starts with */
    sb_clear(&p->key);
    p->sub = A_KEY;
    return 0;
}

static int args_key(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    char c = s[0];
    if (c == '<') {
        int t = args_token(p, s, n, final, out);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t == T_QUOTE) return token_len(t);
        if (t >= 0) return 0;
    } else if (c == ':' || c == '=') {
        while (p->key.n && is_ws(p->key.s[p->key.n - 1])) p->key.n--;
        p->sub = A_VAL_WAIT;
        return 1;
    } else if (c == ',') { /* a key with no value is dropped */
        p->sub = A_KEY_WAIT;
        return 1;
    } else if (is_closer(c)) {
        close_to(p, out, c);
        return 1;
    }
    if (c == '"' || c == '{' || c == '[') return 1;
    if (!sb_add(&p->key, s, 1)) p->oom = true;
    return 1;
}

static int open_nested(outp *p, outp_deltas *out, char c) {
    if (p->depth == MAX_DEPTH) {
        sb_clear(&p->bare);
        p->sub = A_BARE;
        return 0;
    }
    begin_value(p, out);
    emit_args(p, out, &c, 1);
    bool obj = c == '{';
    p->stack[p->depth++] = (frame){obj ? '}' : ']', obj, 0};
    p->sub = obj ? A_KEY_WAIT : A_VAL_WAIT;
    return 1;
}

static int open_string(outp *p, outp_deltas *out, int sub, int len) {
    begin_value(p, out);
    emit_args(p, out, "\"", 1);
    p->sub = sub;
    return len;
}

static int args_val_wait(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    char c = s[0];
    bool obj = top(p)->is_obj;
    if (is_ws(c)) return 1;
    if (c == '<') {
        int t = args_token(p, s, n, final, out);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t == T_QUOTE) return open_string(p, out, A_STR, token_len(t));
        if (t >= 0) return 0;
    }
    if (c == '"') return open_string(p, out, A_JSTR, 1);
    if (c == '{' || c == '[') return open_nested(p, out, c);
    if (c == ',' || (is_closer(c) && find_frame(p, c) >= 0)) {
        if (obj) { /* "k:," or "k:}": the model wrote an empty value */
            begin_value(p, out);
            emit_args(p, out, "\"\"", 2);
        }
        if (c == ',') p->sub = obj ? A_KEY_WAIT : A_VAL_WAIT;
        else close_to(p, out, c);
        return 1;
    }
    sb_clear(&p->bare);
    p->sub = A_BARE;
    return 0;
}

static int args_str(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    size_t k = 0;
    while (k < n && s[k] != '<') k++;
    if (k) { emit_escaped(p, out, s, k); return (int)k; }
    int t = args_token(p, s, n, final, out);
    if (t == M_PARTIAL) return NEED_MORE;
    if (t == T_QUOTE) {
        emit_args(p, out, "\"", 1);
        p->sub = A_AFTER_VAL;
        return token_len(t);
    }
    if (t >= 0) return 0;
    emit_args(p, out, "<", 1);
    return 1;
}

/* A "JSON-quoted" string: valid escapes pass, a lone backslash is literal. */
static int args_jstr(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    size_t k = 0;
    while (k < n && s[k] != '"' && s[k] != '\\' && s[k] != '<') k++;
    if (k) { emit_escaped(p, out, s, k); return (int)k; }
    if (s[0] == '"') {
        emit_args(p, out, "\"", 1);
        p->sub = A_AFTER_VAL;
        return 1;
    }
    if (s[0] == '\\') {
        if (n < 2 && !final) return NEED_MORE;
        if (n >= 2 && s[1] && strchr("\"\\/bfnrt", s[1])) { emit_args(p, out, s, 2); return 2; }
        emit_args(p, out, "\\\\", 2);
        return 1;
    }
    int t = args_token(p, s, n, final, out);
    if (t == M_PARTIAL) return NEED_MORE;
    if (t == T_QUOTE) { emit_args(p, out, "\\\"", 2); return token_len(t); }
    if (t >= 0) return 0;
    emit_args(p, out, "<", 1);
    return 1;
}

/* A bare value runs to a comma, a closer of an open container or a token. */
static int args_bare(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    size_t k = 0;
    int t = M_NONE;
    for (; k < n; k++) {
        char c = s[k];
        if (c == ',' || (is_closer(c) && find_frame(p, c) >= 0)) break;
        if (c == '<' && (t = match_token(s + k, n - k, final)) != M_NONE) break;
    }
    if (!sb_add(&p->bare, s, k)) p->oom = true;
    if (t == M_PARTIAL) return k ? (int)k : NEED_MORE;
    if (k < n) finish_bare(p, out);
    return (int)k;
}

static int args_after_val(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    char c = s[0];
    int next = top(p)->is_obj ? A_KEY_WAIT : A_VAL_WAIT;
    if (is_ws(c)) return 1;
    if (c == ',') { p->sub = next; return 1; }
    if (is_closer(c)) { close_to(p, out, c); return 1; }
    if (c == '<') {
        int t = args_token(p, s, n, final, out);
        if (t == M_PARTIAL) return NEED_MORE;
        if (t >= 0 && t != T_QUOTE) return 0;
    }
    p->sub = next; /* a missing comma */
    return 0;
}

static int step_args(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    static const step_fn subs[] = {
        [A_KEY_WAIT] = args_key_wait, [A_KEY] = args_key, [A_VAL_WAIT] = args_val_wait,
        [A_STR] = args_str, [A_JSTR] = args_jstr, [A_BARE] = args_bare,
        [A_AFTER_VAL] = args_after_val,
    };
    return subs[p->sub](p, s, n, final, out);
}

/* ---- driver ------------------------------------------------------------------ */

static int step(outp *p, const char *s, size_t n, bool final, outp_deltas *out) {
    switch (p->state) {
    case S_CONTENT:
    case S_REASONING: return step_text(p, s, n, final, out);
    case S_PREAMBLE: return step_preamble(p, s, n, final, out);
    case S_NAME: return step_name(p, s, n, final, out);
    default: return step_args(p, s, n, final, out);
    }
}

static void advance(outp *p, size_t avail, bool final, outp_deltas *out) {
    while (p->pos < avail && !p->oom) {
        int r = step(p, p->in.s + p->pos, avail - p->pos, final, out);
        if (r == NEED_MORE) break;
        p->pos += (size_t)r;
    }
}

/* Bytes of in that end on a whole UTF-8 character, so no delta ever ends
 * inside one (every delimiter is ASCII, so holding these back is safe). */
static size_t complete_utf8(const char *s, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xc0) == 0x80) continue;
        size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return want > back ? n - back : n;
    }
    return n;
}

static uint64_t os_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s)
        s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    return s;
}

outp *outp_create(const outp_opts *opts) {
    outp *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->opts = *opts;
    p->rng = opts->id_seed ? opts->id_seed : os_seed();
    p->state = S_CONTENT;
    p->call_ok = true; /* the start of the output is a boundary */
    p->implicit_start = opts->enable_thinking && !opts->in_reasoning;
    if (opts->in_reasoning) {
        p->state = S_REASONING;
        p->label_pending = true;
    }
    return p;
}

void outp_free(outp *p) {
    if (!p) return;
    sbuf *bufs[] = {&p->in, &p->ws, &p->name, &p->raw, &p->key, &p->bare};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]->s);
    free(p);
}

int outp_feed(outp *p, const char *text, size_t len, outp_deltas *out) {
    if (p->oom) return -1;
    if (p->pos > 4096 && p->pos * 2 > p->in.n) { /* drop the consumed part */
        memmove(p->in.s, p->in.s + p->pos, p->in.n - p->pos);
        p->in.n -= p->pos;
        p->pos = 0;
    }
    if (!sb_add(&p->in, text, len)) p->oom = true;
    else advance(p, complete_utf8(p->in.s, p->in.n), false, out);
    return p->oom ? -1 : 0;
}

int outp_finish(outp *p, outp_deltas *out) {
    if (p->oom) return -1;
    advance(p, p->in.n, true, out);
    if (p->state == S_ARGS) args_abort(p, out);
    else if (p->state == S_NAME) name_fallback(p, out);
    sb_clear(&p->ws);
    return p->oom ? -1 : 0;
}

int outp_num_tool_calls(const outp *p) { return p->ncalls; }
