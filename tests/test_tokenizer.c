/* Tokenizer and streaming detokenizer on the fetched Gemma tokenizer.json
 * files (tools/fetch_tokenizers.sh; a missing file fails, it does not skip),
 * plus a tiny hand-written tokenizer.json for the SentencePiece leading-space
 * rule that the Gemma files do not use. Agreement with HF on large inputs is
 * tests/t_tokenizer_hf.sh; here: known ids, invalid UTF-8, byte-fallback runs
 * split across steps, and streaming == full decode on every gsm8k answer. */
#include "test.h"
#include "text/detok.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

#include <jansson.h>
#include <stdint.h>

#define GEMMA3 "tests/data/tokenizers/gemma3/tokenizer.json"
#define GEMMA4 "tests/data/tokenizers/gemma4/tokenizer.json"
#define GSM8K "/work/shared/data/gsm8k/test.jsonl"
#define BYTE(b) (238 + (b)) /* <0xNN> ids in the Gemma vocab */

/* Loaded once per file: each load parses ~30 MB of JSON. */
static tok_tokenizer *gemma(const char *path) {
    static tok_tokenizer *cache[2];
    static bool tried[2];
    int k = strcmp(path, GEMMA3) != 0;
    if (!tried[k]) {
        g4_err err = {{0}};
        tried[k] = true;
        if (!(cache[k] = tok_load(path, &err)))
            fprintf(stderr, "  cannot load %s: %s\n  (run tools/fetch_tokenizers.sh, or make check)\n", path, err.msg);
    }
    return cache[k];
}

/* Encodes text and compares with want[0..n_want). */
static bool encodes_to(tok_tokenizer *t, const char *text, size_t len, bool bos, const int32_t *want, size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    g4_err err = {{0}};
    bool ok = tok_encode(t, text, len, bos, &ids, &n, &err) == 0 && n == n_want &&
              !memcmp(ids, want, n * sizeof *ids);
    if (!ok) {
        fprintf(stderr, "  encode \"%.*s\" ->", (int)len, text);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, " %s\n", err.msg);
    }
    free(ids);
    return ok;
}

#define ENCODES(t, s, bos, ...)                                                      \
    do {                                                                             \
        const int32_t want_[] = {__VA_ARGS__};                                       \
        CHECK(encodes_to(t, s, sizeof(s) - 1, bos, want_, sizeof want_ / sizeof *want_)); \
    } while (0)

/* Streams ids one at a time; each piece must be valid UTF-8. Caller frees. */
static char *stream_all(tok_tokenizer *t, const int32_t *ids, size_t n, bool skip, size_t *len) {
    detok *d = detok_create(t, skip);
    char *all = malloc(1);
    size_t total = 0, k;
    const char *part;
    g4_err err = {{0}};
    for (size_t i = 0; i <= n; i++) {
        int rc = i < n ? detok_feed(d, ids + i, 1, &part, &k, &err) : detok_flush(d, &part, &k, &err);
        CHECK(rc == 0 && utf8_valid(part, k));
        all = realloc(all, total + k + 1);
        memcpy(all + total, part, k);
        total += k;
    }
    all[total] = 0;
    detok_free(d);
    *len = total;
    return all;
}

static void test_fixtures_load(void) {
    tok_tokenizer *g3 = gemma(GEMMA3), *g4 = gemma(GEMMA4);
    REQUIRE(g3 && g4);
    CHECK(tok_vocab_size(g4) == 262144);
    CHECK(tok_vocab_size(g3) == 262145); /* Gemma 3's out-of-vocab <image_soft_token> */
    CHECK(tok_bos_id(g4) == 2 && tok_is_special(g4, 2));
    const char *names[] = {"<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                           "<tool_response|>", "<|\"|>", "<|think|>", "<|channel>", "<channel|>", "<|turn>",
                           "<turn|>", "<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>",
                           "<|video|>"};
    const int32_t ids[] = {46, 47, 48, 49, 50, 51, 52, 98, 100, 101, 105, 106, 255999, 256000,
                           258880, 258881, 258882, 258883, 258884};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        CHECKF(tok_piece_to_id(g4, names[i]) == ids[i], "%s", names[i]);
        CHECKF(tok_is_special(g4, ids[i]), "%d", ids[i]);
        CHECK(!strcmp(tok_id_to_piece(g4, ids[i]), names[i]));
    }
    CHECK(tok_piece_to_id(g4, "<start_of_turn>") == -1);
    CHECK(tok_piece_to_id(g3, "<start_of_turn>") == 105);
    CHECK(tok_piece_to_id(g4, "\n") == 107 && !tok_is_special(g4, 107));
    CHECK(tok_piece_to_id(g4, "<0x41>") == BYTE(0x41) && tok_byte_value(g4, BYTE(0x41)) == 0x41);
    CHECK(tok_id_to_piece(g4, 262144) == NULL && tok_id_to_piece(g4, -1) == NULL);
}

/* Expected ids are HF tokenizers' output for the same files. */
static void test_encode_known_ids(void) {
    tok_tokenizer *g3 = gemma(GEMMA3), *g4 = gemma(GEMMA4);
    REQUIRE(g3 && g4);
    ENCODES(g4, "Hello world", false, 9259, 1902);
    ENCODES(g4, "Hello world", true, 2, 9259, 1902);
    ENCODES(g4, "<|turn>user\nHi<turn|>", false, 105, 2364, 107, 10979, 106);
    ENCODES(g3, "  hi\n\n\nthere <start_of_turn>user\n", false, 138, 2202, 109, 13534, 236743, 105, 2364, 107);
    ENCODES(g3, "\xF0\xA0\x80\x80" "a", false, BYTE(0xF0), BYTE(0xA0), BYTE(0x80), BYTE(0x80), 236746);
}

static bool same_ids(tok_tokenizer *t, const char *a, const char *b) {
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool ok = !tok_encode(t, a, strlen(a), false, &x, &nx, NULL) && !tok_encode(t, b, strlen(b), false, &y, &ny, NULL) &&
              nx == ny && !memcmp(x, y, nx * sizeof *x);
    free(x), free(y);
    return ok;
}

/* Invalid UTF-8 is read as node reads it: U+FFFD per maximal invalid subpart. */
static void test_encode_invalid_utf8(void) {
    tok_tokenizer *g4 = gemma(GEMMA4);
    REQUIRE(g4);
    const int32_t fffd = 238479;
    ENCODES(g4, "a\xFF" "b", false, 236746, fffd, 236763);
    ENCODES(g4, "a\xE4\xB8", false, 236746, fffd);               /* truncated: one U+FFFD */
    CHECK(same_ids(g4, "\xED\xA0\x80", "\uFFFD\uFFFD\uFFFD")); /* surrogate: three */
    CHECK(same_ids(g4, "\xC0\x80", "\uFFFD\uFFFD"));                /* overlong: two */
    CHECK(same_ids(g4, "<|tu\xFFrn>", "<|tu\uFFFDrn>"));
    ENCODES(g4, "\xF0\x9F\x98" "a", false, fffd, 236746);
    size_t n;
    char *fixed = utf8_repair("x\xE2\x82(\xF4\x90", 6, &n);
    CHECK(n == 11 && !memcmp(fixed, "x\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBD", 11));
    free(fixed);
}

static void test_decode_skip_special(void) {
    tok_tokenizer *g4 = gemma(GEMMA4);
    REQUIRE(g4);
    const int32_t ids[] = {2, 105, 9259, 1902, 106, 999999, -5};
    char *keep = tok_decode(g4, ids, 7, false, NULL), *skip = tok_decode(g4, ids, 7, true, NULL);
    CHECK(keep && !strcmp(keep, "<bos><|turn>Hello world<turn|>"));
    CHECK(skip && !strcmp(skip, "Hello world"));
    free(keep), free(skip);
}

static bool streams_to(tok_tokenizer *t, const int32_t *ids, size_t n, bool skip, const char *want) {
    size_t len, len_full = 0;
    char *s = stream_all(t, ids, n, skip, &len), *full = tok_decode(t, ids, n, skip, &len_full);
    bool ok = len == strlen(want) && !memcmp(s, want, len) && len_full == len && !memcmp(full, want, len);
    if (!ok) fprintf(stderr, "  streamed \"%s\", full \"%s\", want \"%s\"\n", s, full, want);
    free(s), free(full);
    return ok;
}

/* A byte-fallback character split over steps comes out whole, and only once
 * its run has ended. */
static void test_byte_fallback_across_steps(void) {
    tok_tokenizer *g4 = gemma(GEMMA4);
    REQUIRE(g4);
    const int32_t ids[] = {BYTE(0xF0), BYTE(0xA0), BYTE(0x80), BYTE(0x80), 236746};
    detok *d = detok_create(g4, false);
    const char *text;
    size_t len;
    for (int i = 0; i < 4; i++) {
        CHECK(detok_feed(d, ids + i, 1, &text, &len, NULL) == 0);
        CHECKF(len == 0, "step %d released %zu bytes early", i, len);
    }
    CHECK(detok_feed(d, ids + 4, 1, &text, &len, NULL) == 0 && !strcmp(text, "\xF0\xA0\x80\x80" "a"));
    /* two ids at once, then the flush releases a run at the end of the stream */
    CHECK(detok_feed(d, ids, 2, &text, &len, NULL) == 0 && len == 0);
    CHECK(detok_feed(d, ids + 2, 2, &text, &len, NULL) == 0 && len == 0);
    CHECK(detok_flush(d, &text, &len, NULL) == 0 && !strcmp(text, "\xF0\xA0\x80\x80"));
    detok_free(d);
    CHECK(streams_to(g4, ids, 5, false, "\xF0\xA0\x80\x80" "a"));
}

/* HF ByteFallback: a run that is not valid UTF-8 as a whole is one U+FFFD per
 * byte; a skipped special token does not end a run, a kept one does. */
static void test_invalid_byte_runs(void) {
    tok_tokenizer *g4 = gemma(GEMMA4);
    REQUIRE(g4);
    const int32_t cut[] = {BYTE(0xE4), BYTE(0xB8), 236746};
    CHECK(streams_to(g4, cut, 3, false, "\xEF\xBF\xBD\xEF\xBF\xBD" "a"));
    const int32_t tail[] = {BYTE(0xE4), BYTE(0xB8), BYTE(0xAD), BYTE(0xFF)};
    CHECK(streams_to(g4, tail, 4, false, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    CHECK(streams_to(g4, tail, 3, false, "\xE4\xB8\xAD"));
    const int32_t lone[] = {236746, BYTE(0x80)};
    CHECK(streams_to(g4, lone, 2, false, "a\xEF\xBF\xBD"));
    const int32_t split[] = {BYTE(0xE4), 1, BYTE(0xB8), BYTE(0xAD)};
    CHECK(streams_to(g4, split, 4, true, "\xE4\xB8\xAD"));
    CHECK(streams_to(g4, split, 4, false, "\xEF\xBF\xBD<eos>\xEF\xBF\xBD\xEF\xBF\xBD"));
    const int32_t nul[] = {BYTE(0), 236746};
    size_t len;
    char *s = tok_decode(g4, nul, 2, false, &len);
    CHECK(s && len == 2 && s[0] == 0 && s[1] == 'a');
    free(s);
}

/* Every gsm8k answer: encode, stream one id at a time == full decode == text. */
static void test_stream_equals_full_on_gsm8k(void) {
    tok_tokenizer *g4 = gemma(GEMMA4);
    REQUIRE(g4);
    FILE *f = fopen(GSM8K, "r");
    REQUIRE(f);
    char *line = NULL;
    size_t cap = 0, count = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *row = json_loads(line, 0, NULL);
        const char *answer = json_string_value(json_object_get(row, "answer"));
        int32_t *ids = NULL;
        size_t n = 0, len, len_full = 0;
        if (!answer || tok_encode(g4, answer, strlen(answer), false, &ids, &n, NULL)) { bad++; json_decref(row); continue; }
        char *full = tok_decode(g4, ids, n, false, &len_full), *streamed = stream_all(g4, ids, n, false, &len);
        if (!full || len != len_full || memcmp(full, streamed, len) || strcmp(full, answer)) {
            if (bad++ < 3) fprintf(stderr, "  mismatch on: %s\n", answer);
        }
        count++;
        free(full), free(streamed), free(ids);
        json_decref(row);
    }
    free(line);
    fclose(f);
    CHECKF(bad == 0, "%zu of %zu answers", bad, count);
    CHECK(count == 1319);
}

/* A small SentencePiece-style file (Llama-like): Prepend "▁" normalizer and a
 * decoder that strips the one leading space, to check that the stream applies
 * the rule once, at its start, as the full decode does. */
static const char *tiny_json =
    "{\"added_tokens\": [{\"id\": 1, \"content\": \"<s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
    "   {\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
    "   {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
    " \"pre_tokenizer\": null,"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}],"
    "   \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1]}}},"
    " \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
    "   {\"type\": \"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" \"},"
    "   {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"},"
    "   {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"fuse_unk\": true, \"unk_token\": \"<unk>\","
    "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"\\u2581\": 2, \"a\": 3, \"b\": 4, \"\\u2581a\": 5, \"ab\": 6,"
    "              \"\\u2581ab\": 7, \"<0x41>\": 8},"
    "   \"merges\": [[\"a\", \"b\"], \"\\u2581 ab\", [\"\\u2581\", \"a\"]]}}";

static tok_tokenizer *load_text(const char *name, const char *json, g4_err *err) {
    static char dir[512];
    if (!dir[0]) snprintf(dir, sizeof dir, "%s", t_tmp_dir("test_tokenizer")); /* made once: it wipes the dir */
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(json, f);
    fclose(f);
    return tok_load(path, err);
}

static void test_leading_space_rule(void) {
    g4_err err = {{0}};
    tok_tokenizer *t = load_text("tiny.json", tiny_json, &err);
    REQUIRE(t);
    ENCODES(t, "ab b", true, 1, 7, 2, 4);       /* "▁ab▁b": ▁+ab merges before ▁+a */
    ENCODES(t, "a<s>A", false, 5, 1, 2, 8);     /* Prepend per segment; "A" by byte fallback */
    const int32_t ids[] = {7, 2, 4};
    CHECK(streams_to(t, ids, 3, false, "ab b"));
    const int32_t lead[] = {2, 2, 3};           /* only one leading space is stripped */
    CHECK(streams_to(t, lead, 3, false, " a"));
    const int32_t bos[] = {1, 5};
    CHECK(streams_to(t, bos, 2, true, "a"));
    CHECK(streams_to(t, bos, 2, false, "<s> a"));
    tok_free(t);
}

/* The vocab/merges scanner decodes escapes as jansson would. */
static void test_json_escapes(void) {
    g4_err err = {{0}};
    tok_tokenizer *t = load_text("esc.json",
        "{\"model\": {\"type\": \"BPE\", \"merges\": [[\"\\\"\", \"q\"], \"\\u00e9 \\ud83d\\ude00\"],"
        " \"vocab\": {\"\\\"\": 0, \"q\": 1, \"\\\"q\": 2, \"\\u00e9\": 3, \"\\ud83d\\ude00\": 4,"
        " \"\u00e9\\ud83d\\ude00\": 5, \"a\\n\\t\\\\\\/\": 6}},"
        " \"decoder\": {\"type\": \"Fuse\"}}", &err);
    REQUIRE(t);
    CHECK(tok_piece_to_id(t, "\"q") == 2);
    CHECK(tok_piece_to_id(t, "\xC3\xA9") == 3);
    CHECK(tok_piece_to_id(t, "\xF0\x9F\x98\x80") == 4);
    CHECK(tok_piece_to_id(t, "a\n\t\\/") == 6);
    ENCODES(t, "\"q\xC3\xA9\xF0\x9F\x98\x80", false, 2, 5);
    tok_free(t);
    const char *bad[] = {"\"\\ud83d\"", "\"\\u0000\"", "\"\\x\"", "\"\x01\"", "\"\xC3\"", "1.5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char json[256];
        int k = i < 5 ? snprintf(json, sizeof json, "{\"model\": {\"vocab\": {%s: 0}, \"merges\": []}}", bad[i])
                      : snprintf(json, sizeof json, "{\"model\": {\"vocab\": {\"a\": %s}, \"merges\": []}}", bad[i]);
        CHECK(k > 0 && load_text("bad.json", json, &err) == NULL);
        CHECKF(strstr(err.msg, "byte "), "%s: %s", bad[i], err.msg);
    }
}

/* Malformed files must fail cleanly (run under ASan to see it): the tiny
 * file with one byte changed, truncated, or cut out, many times over. */
static void test_mutated_files_fail_cleanly(void) {
    size_t n = strlen(tiny_json), loaded = 0;
    char *buf = malloc(n + 1);
    uint32_t seed = 12345;
    for (int i = 0; i < 3000; i++) {
        memcpy(buf, tiny_json, n + 1);
        seed = seed * 1103515245u + 12345u;
        size_t at = (seed >> 8) % n;
        int how = i % 3;
        if (how == 0) buf[at] = (char)(seed >> 3);
        else if (how == 1) buf[at] = 0;
        else memmove(buf + at, buf + at + 1, n - at);
        g4_err err = {{0}};
        tok_tokenizer *t = load_text("mut.json", buf, &err);
        if (t) {
            int32_t *ids = NULL;
            size_t k;
            CHECK(tok_encode(t, "ab b\xFF<s>", 8, true, &ids, &k, &err) == 0 || err.msg[0]);
            free(ids);
            tok_free(t);
            loaded++;
        } else {
            CHECK(err.msg[0] != 0);
        }
    }
    CHECK(loaded > 0 && loaded < 3000);
    free(buf);
}

static void test_load_errors_name_the_problem(void) {
    g4_err err = {{0}};
    CHECK(tok_load("tests/tmp/no/such/tokenizer.json", &err) == NULL && strstr(err.msg, "no/such"));
    CHECK(load_text("wp.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}, \"decoder\": null}", &err) == NULL);
    CHECKF(strstr(err.msg, "model.type"), "%s", err.msg);
    CHECK(load_text("merge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0},"
                                  " \"merges\": [[\"a\", \"a\"]]}, \"decoder\": {\"type\": \"Fuse\"}}", &err) == NULL);
    CHECKF(strstr(err.msg, "model.merges[0]"), "%s", err.msg);
}

TEST_MAIN("tokenizer", TEST_CASE(test_fixtures_load), TEST_CASE(test_encode_known_ids),
          TEST_CASE(test_encode_invalid_utf8), TEST_CASE(test_decode_skip_special),
          TEST_CASE(test_byte_fallback_across_steps), TEST_CASE(test_invalid_byte_runs),
          TEST_CASE(test_stream_equals_full_on_gsm8k), TEST_CASE(test_leading_space_rule),
          TEST_CASE(test_json_escapes), TEST_CASE(test_mutated_files_fail_cleanly),
          TEST_CASE(test_load_errors_name_the_problem))
