/* g4 generate --model-path DIR (--prompt TEXT | --prompt-ids 1,2,3) --max-tokens N
 *             [--greedy] [--ids] [sampling options] [--kv-cache fp8|bf16|f32]
 * Streams the generated text (token ids when the model has no tokenizer.json);
 * with --ids the last line is the generated token ids, space-separated. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "text/detok.h"
#include "text/tokenizer.h"
#include "util/progress.h"

typedef struct {
    const char *model, *prompt, *prompt_ids;
    int max_tokens;
    bool print_ids, no_bos, ignore_eos;
    g4_sampling sampling;
    g4_engine_opts engine;
} gen_args;

static void usage(void) {
    fprintf(stderr,
            "usage: g4 generate --model-path DIR (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]\n"
            "                   [--greedy] [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed N]\n"
            "                   [--ids] [--no-bos] [--ignore-eos] [--kv-cache fp8|bf16|f32] [--max-context N]\n"
            "                   [--device cpu|cuda]\n");
}

static int parse(int argc, char **argv, gen_args *a) {
    memset(a, 0, sizeof *a);
    a->max_tokens = 128;
    g4_sampling_defaults(&a->sampling);
    g4_engine_default_opts(&a->engine);
    int missing = 0;
    const char *v;
    for (int i = 1; i < argc && !missing; i++) {
        if ((v = arg_value(&i, argc, argv, "--model-path", &missing))) a->model = v;
        else if ((v = arg_value(&i, argc, argv, "--prompt", &missing))) a->prompt = v;
        else if ((v = arg_value(&i, argc, argv, "--prompt-ids", &missing))) a->prompt_ids = v;
        else if ((v = arg_value(&i, argc, argv, "--max-tokens", &missing))) a->max_tokens = atoi(v);
        else if ((v = arg_value(&i, argc, argv, "--temperature", &missing))) a->sampling.temperature = strtof(v, NULL);
        else if ((v = arg_value(&i, argc, argv, "--top-k", &missing))) a->sampling.top_k = atoi(v);
        else if ((v = arg_value(&i, argc, argv, "--top-p", &missing))) a->sampling.top_p = strtof(v, NULL);
        else if ((v = arg_value(&i, argc, argv, "--min-p", &missing))) a->sampling.min_p = strtof(v, NULL);
        else if ((v = arg_value(&i, argc, argv, "--seed", &missing))) a->sampling.seed = strtoull(v, NULL, 10);
        else if ((v = arg_value(&i, argc, argv, "--max-context", &missing))) a->engine.max_context = atoi(v);
        else if ((v = arg_value(&i, argc, argv, "--kv-cache", &missing))) {
            if (g4_kv_dtype_parse(v, &a->engine.kv_dtype)) return fprintf(stderr, "g4 generate: bad --kv-cache '%s'\n", v), -1;
        } else if ((v = arg_value(&i, argc, argv, "--device", &missing))) {
            if (!strcmp(v, "cpu")) a->engine.device = G4_DEVICE_CPU;
            else if (!strcmp(v, "cuda")) a->engine.device = G4_DEVICE_CUDA;
            else return fprintf(stderr, "g4 generate: bad --device '%s'\n", v), -1;
        } else if (!strcmp(argv[i], "--greedy")) a->sampling.temperature = 0.0f;
        else if (!strcmp(argv[i], "--ids")) a->print_ids = true;
        else if (!strcmp(argv[i], "--no-bos")) a->no_bos = true;
        else if (!strcmp(argv[i], "--ignore-eos")) a->ignore_eos = true;
        else if (!missing) return fprintf(stderr, "g4 generate: unknown option '%s'\n", argv[i]), -1;
    }
    if (missing || !a->model || !a->prompt == !a->prompt_ids || a->max_tokens < 0) return -1;
    return 0;
}

/* "1,2,3" -> ids; errors name the bad item. */
static int parse_ids(const char *s, int32_t **out, int *n, g4_err *err) {
    int cap = 16;
    *out = malloc(sizeof(int32_t) * cap);
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > 0x7fffffff)
            return g4_errorf(err, "--prompt-ids: item %d is not a token id", *n + 1);
        if (*n == cap) *out = realloc(*out, sizeof(int32_t) * (cap *= 2));
        (*out)[(*n)++] = (int32_t)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return g4_errorf(err, "--prompt-ids: unexpected '%c' after item %d", *s, *n);
    }
    return *n ? 0 : g4_errorf(err, "--prompt-ids is empty");
}

static tok_tokenizer *open_tokenizer(const char *model, bool required, g4_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", model);
    if (access(path, F_OK)) {
        if (required) g4_errorf(err, "%s: no tokenizer.json, so --prompt cannot be encoded (use --prompt-ids)", model);
        return NULL;
    }
    return tok_load(path, err);
}

static bool is_stop(const g4_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return true;
    return false;
}

/* Prints one generated token: text through the detokenizer, or its id. */
static void emit(detok *d, int32_t id) {
    if (!d) {
        printf("%d ", id);
    } else {
        const char *text;
        size_t len;
        g4_err err;
        if (!detok_feed(d, &id, 1, &text, &len, &err)) fwrite(text, 1, len, stdout);
    }
    fflush(stdout);
}

static int generate(g4_engine *e, const gen_args *a, const int32_t *prompt, int n_prompt, detok *d, g4_err *err) {
    const g4_config *c = g4_engine_config(e);
    int seq = g4_engine_seq_alloc(e, err);
    if (seq < 0) return -1;
    int suppress[2] = {c->eoi_token_id, c->eoa_token_id};
    g4_sampler *s = g4_sampler_create(&a->sampling, c->vocab_size, suppress, 2);
    float *logits = malloc(sizeof(float) * c->vocab_size);
    int32_t *out = malloc(sizeof(int32_t) * (a->max_tokens + 1));
    int n_out = 0, rc = 0;
    double t0 = g4_now();
    g4_batch_item it = {seq, prompt, n_prompt, false};
    rc = g4_engine_forward(e, &it, 1, logits, err);
    double t1 = g4_now();
    while (!rc && n_out < a->max_tokens) {
        int32_t id = g4_sample(s, logits);
        out[n_out++] = id;
        if (!a->ignore_eos && is_stop(c, id)) break;
        emit(d, id);
        if (n_out == a->max_tokens) break;
        g4_batch_item step = {seq, &id, 1, false};
        rc = g4_engine_forward(e, &step, 1, logits, err);
    }
    double t2 = g4_now();
    if (d) {
        const char *text;
        size_t len;
        if (!detok_flush(d, &text, &len, err)) fwrite(text, 1, len, stdout);
    }
    printf("\n");
    if (a->print_ids) {
        for (int i = 0; i < n_out; i++) printf("%s%d", i ? " " : "", out[i]);
        printf("\n");
    }
    fprintf(stderr, "[g4] prompt %d tokens in %.2f s; %d generated in %.2f s (%.2f tok/s)\n", n_prompt, t1 - t0,
            n_out, t2 - t1, n_out > 1 ? (n_out - 1) / (t2 - t1) : 0.0);
    free(out);
    free(logits);
    g4_sampler_free(s);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    gen_args a;
    if (parse(argc, argv, &a)) {
        usage();
        return 2;
    }
    g4_err err;
    int32_t *prompt = NULL;
    int n_prompt = 0, rc = 1;
    tok_tokenizer *tok = NULL;
    detok *d = NULL;
    g4_engine *e = NULL;
    if (a.prompt_ids ? parse_ids(a.prompt_ids, &prompt, &n_prompt, &err) : 0) goto out;
    tok = open_tokenizer(a.model, a.prompt != NULL, &err);
    if (!tok && a.prompt) goto out;
    if (a.prompt) {
        size_t n;
        if (tok_encode(tok, a.prompt, strlen(a.prompt), !a.no_bos, &prompt, &n, &err)) goto out;
        n_prompt = (int)n;
    }
    if (tok) d = detok_create(tok, false);
    if (!(e = g4_engine_create(a.model, &a.engine, &err))) goto out;
    rc = generate(e, &a, prompt, n_prompt, d, &err) ? 1 : 0;
out:
    if (rc) fprintf(stderr, "g4 generate: %s\n", err.msg);
    g4_engine_free(e);
    detok_free(d);
    tok_free(tok);
    free(prompt);
    return rc;
}
