/* The Gemma 4 output parser: a corpus of realistic and malformed outputs,
 * each fed whole, split at every boundary, byte by byte and in random
 * chunks; the deltas are merged the way openai-python merges stream chunks
 * and the result must match the expected content, reasoning and calls. */
#include "test.h"
#include "text/output_parser.h"

#include <jansson.h>
#include <stdbool.h>

#define Q "<|\"|>"
#define TC "<|tool_call>"
#define TCE "<tool_call|>"

typedef struct {
    const char *name;
    bool thinking;
    const char *text;
    const char *content;   /* expected; "" = none */
    const char *reasoning; /* expected; "" = none */
    const char *calls[4][2]; /* {name, arguments as JSON} */
} pcase;

static const pcase corpus[] = {
    {"plain", 0, "Hello, world!<turn|>", "Hello, world!", "", {{0}}},
    {"thinking", 1, "<|channel>thought\nLet me think: 2+2.<channel|>The answer is 4.<turn|>",
     "The answer is 4.", "Let me think: 2+2.", {{0}}},
    {"multiline_content", 0, "Sure! Here's a poem:\n\nRoses are red,\n  violets are blue.\n<turn|>",
     "Sure! Here's a poem:\n\nRoses are red,\n  violets are blue.", "", {{0}}},
    {"simple_call", 0, TC "call:get_weather{location:" Q "Tokyo" Q "}" TCE "<|tool_response>", "", "",
     {{"get_weather", "{\"location\":\"Tokyo\"}"}}},
    {"scalars", 0, TC "call:set{count:42,ratio:-3.5e2,on:true,off:false,none:null,zero:0,f:0.25}" TCE, "", "",
     {{"set", "{\"count\":42,\"ratio\":-350.0,\"on\":true,\"off\":false,\"none\":null,\"zero\":0,\"f\":0.25}"}}},
    {"nested", 0,
     TC "call:book{guest:{name:" Q "Ana" Q ",age:30},rooms:[1,2,{type:" Q "suite" Q "}],tags:[],meta:{}}" TCE,
     "", "",
     {{"book", "{\"guest\":{\"name\":\"Ana\",\"age\":30},\"rooms\":[1,2,{\"type\":\"suite\"}],"
               "\"tags\":[],\"meta\":{}}"}}},
    {"unicode", 0, TC "call:translate{text:" Q "héllo 世界 🙂" Q ",lang:" Q "日本語" Q "}" TCE, "", "",
     {{"translate", "{\"text\":\"héllo 世界 🙂\",\"lang\":\"日本語\"}"}}},
    {"escapes", 0,
     TC "call:write{path:" Q "C:\\dir\\file.txt" Q ",body:" Q "line1\nsaid \"hi\"\ttab\x01" Q "}" TCE, "", "",
     {{"write", "{\"path\":\"C:\\\\dir\\\\file.txt\",\"body\":\"line1\\nsaid \\\"hi\\\"\\ttab\\u0001\"}"}}},
    {"two_calls_one_block", 0, TC "call:a{x:1}call:b{y:" Q "z" Q "}" TCE, "", "",
     {{"a", "{\"x\":1}"}, {"b", "{\"y\":\"z\"}"}}},
    {"back_to_back_blocks", 0, TC "call:a{x:1}" TCE TC "call:b{}" TCE "<|tool_response>", "", "",
     {{"a", "{\"x\":1}"}, {"b", "{}"}}},
    {"think_then_call", 1,
     "<|channel>thought\nNeed the weather.<channel|>" TC "call:get_weather{city:" Q "Paris" Q "}" TCE
     "<|tool_response>",
     "", "Need the weather.", {{"get_weather", "{\"city\":\"Paris\"}"}}},
    {"bare_call_after_channel", 1,
     "<|channel>thought\nI'll call it.<channel|>call:get_weather{city:" Q "Oslo" Q "}" TCE, "",
     "I'll call it.", {{"get_weather", "{\"city\":\"Oslo\"}"}}},
    {"bare_call_thinking_off", 0, "call:get_weather{city:" Q "Rome" Q "}", "", "",
     {{"get_weather", "{\"city\":\"Rome\"}"}}},
    {"bare_opener", 0, TC ":get_time{tz:" Q "UTC" Q "}" TCE, "", "", {{"get_time", "{\"tz\":\"UTC\"}"}}},
    {"round_brackets", 0, TC "call:search(query:" Q "cats" Q ",limit:5)" TCE, "", "",
     {{"search", "{\"query\":\"cats\",\"limit\":5}"}}},
    {"stray_channel_close", 0, "<channel|>The answer is 42.<turn|>", "The answer is 42.", "", {{0}}},
    {"stray_channel_open", 1, "<|channel>thought\nA<|channel>B<channel|>C<channel|>D", "CD", "AB", {{0}}},
    {"truncated_string", 0, TC "call:write{body:" Q "Once upon a time", "", "",
     {{"write", "{\"body\":\"Once upon a time\"}"}}},
    {"truncated_number", 0, TC "call:f{a:1,b:2", "", "", {{"f", "{\"a\":1,\"b\":2}"}}},
    {"truncated_after_colon", 0, TC "call:f{a:" Q "x" Q ",b:", "", "", {{"f", "{\"a\":\"x\"}"}}},
    {"truncated_in_key", 0, TC "call:f{a:1,bb", "", "", {{"f", "{\"a\":1}"}}},
    {"truncated_nested", 0, TC "call:f{a:[{b:" Q "x", "", "", {{"f", "{\"a\":[{\"b\":\"x\"}]}"}}},
    {"truncated_in_name", 0, "Checking." TC "call:get_wea", "Checking.call:get_wea", "", {{0}}},
    {"truncated_reasoning", 1, "<|channel>thought\nStill thinking about", "", "Still thinking about", {{0}}},
    {"truncated_label", 1, "<|channel>thou", "", "", {{0}}},
    {"call_inside_reasoning", 1, "<|channel>thought\nLet me check." TC "call:lookup{id:7}" TCE, "",
     "Let me check.", {{"lookup", "{\"id\":7}"}}},
    {"bare_call_inside_reasoning", 1, "<|channel>thought\nI will look it up.\ncall:lookup{id:8}" TCE, "",
     "I will look it up.", {{"lookup", "{\"id\":8}"}}},
    {"bare_values", 0, TC "call:f{city: Paris, unit: celsius , code: 007, v: 1.}" TCE, "", "",
     {{"f", "{\"city\":\"Paris\",\"unit\":\"celsius\",\"code\":\"007\",\"v\":\"1.\"}"}}},
    {"python_literals", 0, TC "call:f{a:None,b:True,c:nil,d:False}" TCE, "", "",
     {{"f", "{\"a\":null,\"b\":true,\"c\":null,\"d\":false}"}}},
    {"quoted_key", 0, TC "call:f{" Q "my key" Q ":1}" TCE, "", "", {{"f", "{\"my key\":1}"}}},
    {"empty_args", 0, TC "call:ping{}" TCE, "", "", {{"ping", "{}"}}},
    {"no_brace", 0, TC "call:ping" TCE, "", "", {{"ping", "{}"}}},
    {"content_then_call", 0, "Let me check that for you.\n" TC "call:f{q:" Q "x" Q "}" TCE,
     "Let me check that for you.", "", {{"f", "{\"q\":\"x\"}"}}},
    {"quote_token_in_content", 0, "He said " Q "hi" Q ".", "He said \"hi\".", "", {{0}}},
    {"angle_brackets", 0, "Use a < b and <div> tags; 3 <4 <|x> <tool_resp", "Use a < b and <div> tags; 3 <4 <|x> <tool_resp",
     "", {{0}}},
    {"call_word_mid_line", 0, "To dial, call: 555-1234 or call:me{now}", "To dial, call: 555-1234 or call:me{now}",
     "", {{0}}},
    {"json_quoted", 0, TC "call:f{\"a\":\"b \\\"q\\\" \\\\ \\x\", \"n\": 1}" TCE, "", "",
     {{"f", "{\"a\":\"b \\\"q\\\" \\\\ \\\\x\",\"n\":1}"}}},
    {"deep", 0, TC "call:f{a:{b:{c:[[1,2],[3,[]]]}}}" TCE, "", "", {{"f", "{\"a\":{\"b\":{\"c\":[[1,2],[3,[]]]}}}"}}},
    {"code_string", 0,
     TC "call:run{code:" Q "def f():\n    return {\"a\": [1, 2]}\n" Q ",lang:" Q "python" Q "}" TCE, "", "",
     {{"run", "{\"code\":\"def f():\\n    return {\\\"a\\\": [1, 2]}\\n\",\"lang\":\"python\"}"}}},
    {"empty_thought", 1, "<|channel>thought\n<channel|>Hi!", "Hi!", "", {{0}}},
    {"implicit_reasoning", 1, "thought\nHmm.<channel|>Yes.", "Yes.", "Hmm.", {{0}}},
    {"truncated_delim_in_string", 0, TC "call:f{a:" Q "abc<|\"", "", "", {{"f", "{\"a\":\"abc<|\\\"\"}"}}},
    {"trailing_ws", 0, "Done.\n\n<turn|>", "Done.", "", {{0}}},
    {"two_bare_calls", 1, "<|channel>thought\nx<channel|>call:a{}call:b{x:[" Q "p" Q "," Q "q" Q "]}", "", "x",
     {{"a", "{}"}, {"b", "{\"x\":[\"p\",\"q\"]}"}}},
    {"content_after_call", 0, TC "call:f{}" TCE "Done.", "Done.", "", {{"f", "{}"}}},
    {"equals_and_parens", 0, TC "call:f(x=1, y=" Q "two" Q ")" TCE, "", "", {{"f", "{\"x\":1,\"y\":\"two\"}"}}},
    {"strings_with_structure", 0, TC "call:f{list:[" Q "a,b" Q "," Q "}{" Q "],s:" Q "x:y" Q "}" TCE, "", "",
     {{"f", "{\"list\":[\"a,b\",\"}{\"],\"s\":\"x:y\"}"}}},
    {"eos", 0, "Bye<eos>", "Bye", "", {{0}}},
    {"segment_whitespace", 1, "<|channel>thought\n\n  Plan.\n<channel|>\n\n" TC "call:f{}" TCE "\nDone. <turn|>",
     "Done.", "Plan.", {{"f", "{}"}}},
    {"text_around_bare_call", 0, "Note:\ncall:f{x:1}\nafter\n", "Note:\nafter", "", {{"f", "{\"x\":1}"}}},
    {"thinking_off_channel", 0, "<|channel>thought\nhmm<channel|>Answer", "Answer", "hmm", {{0}}},
    {"missing_block_close", 0, TC "call:f{a:1}Here it is.", "Here it is.", "", {{"f", "{\"a\":1}"}}},
    {"two_cities", 1,
     "<|channel>thought\nThe user wants weather in two cities.\nI should call the tool twice.\n<channel|>" TC
     "call:get_weather{city:" Q "Zürich" Q ",units:" Q "metric" Q "}" TCE TC "call:get_weather{city:" Q
     "São Paulo" Q ",units:" Q "metric" Q "}" TCE "<|tool_response>",
     "", "The user wants weather in two cities.\nI should call the tool twice.",
     {{"get_weather", "{\"city\":\"Zürich\",\"units\":\"metric\"}"},
      {"get_weather", "{\"city\":\"São Paulo\",\"units\":\"metric\"}"}}},
    {"doubled_brace", 0, TC "call:f{a:{b:1}}}" TCE, "", "", {{"f", "{\"a\":{\"b\":1}}"}}},
    {"block_closed_inside_string", 0, TC "call:f{a:" Q "unterminated" TCE "Next", "Next", "",
     {{"f", "{\"a\":\"unterminated\"}"}}},
    {"empty_value", 0, TC "call:f{a:,b:2}" TCE, "", "", {{"f", "{\"a\":\"\",\"b\":2}"}}},
    {"numbers", 0, TC "call:f{n:-0.5,e:1E+3,bad:-,big:12345678901234}" TCE, "", "",
     {{"f", "{\"n\":-0.5,\"e\":1000.0,\"bad\":\"-\",\"big\":12345678901234}"}}},
    {"long_answer_with_markdown", 1,
     "<|channel>thought\nPlan: list steps.\n\n1. a\n2. b<channel|>## Steps\n\n- **First**: do `x < y`.\n"
     "- Second: {not a call}\n\n```json\n{\"k\": [1, 2]}\n```\n<turn|>",
     "## Steps\n\n- **First**: do `x < y`.\n- Second: {not a call}\n\n```json\n{\"k\": [1, 2]}\n```",
     "Plan: list steps.\n\n1. a\n2. b", {{0}}},
};

#define NCORPUS ((int)(sizeof corpus / sizeof corpus[0]))

/* ---- openai-python's accumulate_delta, in jansson ----------------------- */

static void acc_merge(json_t *acc, json_t *delta);

static void acc_list(json_t *acc, json_t *delta) {
    size_t i;
    json_t *e;
    json_array_foreach(delta, i, e) {
        json_t *idx = json_object_get(e, "index");
        CHECK(json_is_integer(idx)); /* openai-python raises without it */
        if (!idx) continue;
        size_t k = (size_t)json_integer_value(idx);
        if (k >= json_array_size(acc)) json_array_append_new(acc, json_deep_copy(e));
        else acc_merge(json_array_get(acc, k), e);
    }
}

static void acc_merge(json_t *acc, json_t *delta) {
    const char *key;
    json_t *dv;
    json_object_foreach(delta, key, dv) {
        json_t *av = json_object_get(acc, key);
        if (!av || json_is_null(av) || !strcmp(key, "index") || !strcmp(key, "type")) {
            json_object_set_new(acc, key, json_deep_copy(dv));
        } else if (json_is_string(av) && json_is_string(dv)) {
            size_t a = json_string_length(av), d = json_string_length(dv);
            char *s = malloc(a + d + 1);
            memcpy(s, json_string_value(av), a);
            memcpy(s + a, json_string_value(dv), d);
            json_object_set_new(acc, key, json_stringn(s, a + d));
            free(s);
        } else if (json_is_object(av) && json_is_object(dv)) {
            acc_merge(av, dv);
        } else if (json_is_array(av) && json_is_array(dv)) {
            acc_list(av, dv);
        } else {
            CHECKF(0, "cannot merge key %s", key);
        }
    }
}

/* The chat.completion.chunk delta the server would send for d. */
static json_t *chunk_delta(const outp_delta *d) {
    json_t *text = d->text ? json_stringn(d->text, d->len) : NULL;
    switch (d->kind) {
    case OUTP_CONTENT: return text ? json_pack("{s:o}", "content", text) : NULL;
    case OUTP_REASONING: return text ? json_pack("{s:o}", "reasoning_content", text) : NULL;
    case OUTP_TOOL_START:
        return json_pack("{s:[{s:i,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index", d->index, "id", d->id,
                         "type", "function", "function", "name", d->name, "arguments", "");
    default:
        return text ? json_pack("{s:[{s:i,s:{s:o}}]}", "tool_calls", "index", d->index, "function",
                                "arguments", text)
                    : NULL;
    }
}

/* ---- running the parser ------------------------------------------------- */

typedef struct {
    const char *label;
    int started; /* tool calls started so far */
} run_state;

/* Checks each delta on its own, then merges it into acc. */
static void take(json_t *acc, outp_deltas *d, run_state *rs) {
    for (size_t i = 0; i < d->n; i++) {
        outp_delta *x = &d->v[i];
        CHECKF(!x->text || !strstr(x->text, Q), "%s: <|\"|> leaked", rs->label);
        CHECKF(!x->name || !strstr(x->name, Q), "%s: <|\"|> leaked in a name", rs->label);
        if (x->kind == OUTP_TOOL_START) CHECKF(x->index == rs->started++, "%s: call index", rs->label);
        if (x->kind == OUTP_TOOL_ARGS) CHECKF(x->index == rs->started - 1, "%s: args index", rs->label);
        if (x->kind == OUTP_CONTENT || x->kind == OUTP_REASONING) CHECK(x->index == -1);
        json_t *cd = chunk_delta(x);
        CHECKF(cd != NULL, "%s: delta %zu is not valid UTF-8", rs->label, i);
        if (cd) acc_merge(acc, cd);
        json_decref(cd);
    }
    outp_deltas_clear(d);
}

/* Feeds text cut at the given offsets (ascending) and returns the merged
 * message delta {content, reasoning_content, tool_calls}. */
static json_t *run_cuts(const char *text, bool thinking, bool tools, const size_t *cuts, int ncuts,
                        const char *label) {
    outp_opts o = {.enable_thinking = thinking, .tools_enabled = tools, .id_seed = 42};
    outp *p = outp_create(&o);
    outp_deltas d = {0};
    json_t *acc = json_object();
    run_state rs = {label, 0};
    size_t len = strlen(text), at = 0;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        CHECK(outp_feed(p, text + at, end - at, &d) == 0);
        take(acc, &d, &rs);
        at = end;
    }
    CHECK(outp_finish(p, &d) == 0);
    take(acc, &d, &rs);
    CHECK(outp_num_tool_calls(p) == rs.started);
    outp_deltas_free(&d);
    outp_free(p);
    return acc;
}

static json_t *run_whole(const char *text, bool thinking, bool tools) {
    return run_cuts(text, thinking, tools, NULL, 0, text);
}

static const char *str_or_empty(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Compares a merged result with what the case expects. */
static void check_expected(const pcase *c, json_t *acc) {
    CHECKF(!strcmp(str_or_empty(acc, "content"), c->content), "%s: content [%s]", c->name,
           str_or_empty(acc, "content"));
    CHECKF(!strcmp(str_or_empty(acc, "reasoning_content"), c->reasoning), "%s: reasoning [%s]", c->name,
           str_or_empty(acc, "reasoning_content"));
    json_t *calls = json_object_get(acc, "tool_calls");
    size_t want = 0;
    while (want < 4 && c->calls[want][0]) want++;
    CHECKF(json_array_size(calls) == want, "%s: %zu calls, want %zu", c->name, json_array_size(calls), want);
    for (size_t i = 0; i < want && i < json_array_size(calls); i++) {
        json_t *tc = json_array_get(calls, i), *fn = json_object_get(tc, "function");
        const char *id = str_or_empty(tc, "id");
        CHECKF(!strncmp(id, "call_", 5) && strlen(id) == 29, "%s: id %s", c->name, id);
        CHECK(!strcmp(str_or_empty(tc, "type"), "function"));
        CHECKF(!strcmp(str_or_empty(fn, "name"), c->calls[i][0]), "%s: name %s", c->name,
               str_or_empty(fn, "name"));
        const char *args = str_or_empty(fn, "arguments");
        json_t *got = json_loads(args, 0, NULL);
        json_t *exp = json_loads(c->calls[i][1], 0, NULL);
        REQUIRE(exp);
        CHECKF(json_is_object(got) && json_equal(got, exp), "%s: call %zu arguments %s, want %s", c->name, i,
               args, c->calls[i][1]);
        json_decref(got);
        json_decref(exp);
    }
}

static void check_same(const pcase *c, json_t *whole, json_t *split, const char *how, size_t where) {
    if (json_equal(whole, split)) return;
    char *a = json_dumps(whole, JSON_COMPACT), *b = json_dumps(split, JSON_COMPACT);
    CHECKF(0, "%s: split %s %zu differs:\n    whole %s\n    split %s", c->name, how, where, a, b);
    free(a);
    free(b);
}

/* ---- the tests ---------------------------------------------------------------- */

static void test_corpus_whole(void) {
    CHECK(NCORPUS >= 30);
    for (int i = 0; i < NCORPUS; i++) {
        json_t *acc = run_whole(corpus[i].text, corpus[i].thinking, true);
        check_expected(&corpus[i], acc);
        json_decref(acc);
    }
}

static void test_corpus_every_boundary(void) {
    for (int i = 0; i < NCORPUS; i++) {
        const pcase *c = &corpus[i];
        json_t *whole = run_whole(c->text, c->thinking, true);
        for (size_t cut = 1; cut < strlen(c->text); cut++) {
            json_t *split = run_cuts(c->text, c->thinking, true, &cut, 1, c->name);
            check_same(c, whole, split, "at", cut);
            json_decref(split);
        }
        json_decref(whole);
    }
}

static void test_corpus_byte_by_byte(void) {
    for (int i = 0; i < NCORPUS; i++) {
        const pcase *c = &corpus[i];
        size_t len = strlen(c->text), cuts[4096];
        REQUIRE(len < 4096);
        for (size_t k = 1; k < len; k++) cuts[k - 1] = k;
        json_t *whole = run_whole(c->text, c->thinking, true);
        json_t *split = run_cuts(c->text, c->thinking, true, cuts, len ? (int)len - 1 : 0, c->name);
        check_same(c, whole, split, "bytewise", 0);
        check_expected(c, split);
        json_decref(whole);
        json_decref(split);
    }
}

static uint64_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Random cut points with chunks of 1..max bytes. */
static int random_cuts(uint64_t *rng, size_t len, size_t max, size_t *cuts) {
    int n = 0;
    for (size_t at = 1 + rng_next(rng) % max; at < len; at += 1 + rng_next(rng) % max) cuts[n++] = at;
    return n;
}

static void test_corpus_random_chunks(void) {
    uint64_t rng = 7;
    static size_t cuts[4096];
    for (int i = 0; i < NCORPUS; i++) {
        const pcase *c = &corpus[i];
        json_t *whole = run_whole(c->text, c->thinking, true);
        for (int trial = 0; trial < 40; trial++) {
            int n = random_cuts(&rng, strlen(c->text), 1 + trial % 12, cuts);
            json_t *split = run_cuts(c->text, c->thinking, true, cuts, n, c->name);
            check_same(c, whole, split, "random trial", (size_t)trial);
            json_decref(split);
        }
        json_decref(whole);
    }
}

/* Feeds one piece and returns the deltas as "K:text|" with K = c(ontent),
 * r(easoning), s(tart: name), a(rgs). */
static const char *feed_str(outp *p, const char *text, outp_deltas *d) {
    static char buf[1024];
    buf[0] = 0;
    CHECK(outp_feed(p, text, strlen(text), d) == 0);
    for (size_t i = 0; i < d->n; i++) {
        const outp_delta *x = &d->v[i];
        const char k[] = {"crsa"[x->kind], ':', 0};
        strcat(buf, k);
        strcat(buf, x->kind == OUTP_TOOL_START ? x->name : x->text);
        strcat(buf, "|");
    }
    outp_deltas_clear(d);
    return buf;
}

static void test_holds_partial_delimiters(void) {
    outp_opts o = {.enable_thinking = true, .tools_enabled = true, .id_seed = 1};
    outp *p = outp_create(&o);
    outp_deltas d = {0};
    CHECK(!strcmp(feed_str(p, "Hello <|chan", &d), "c:Hello|"));
    CHECK(!strcmp(feed_str(p, "nel>thou", &d), ""));
    CHECK(!strcmp(feed_str(p, "ght\nhm <chan", &d), "r:hm|"));
    CHECK(!strcmp(feed_str(p, "ge>", &d), "r: <change>|")); /* not a delimiter */
    CHECK(!strcmp(feed_str(p, "<channel|>ok", &d), "c:ok|"));
    outp_deltas_free(&d);
    outp_free(p);
}

/* A long string value streams as it arrives; only a possible <|"|> prefix
 * and bare values (which may still change type) are held. */
static void test_arguments_stream_incrementally(void) {
    outp_opts o = {.tools_enabled = true, .id_seed = 1};
    outp *p = outp_create(&o);
    outp_deltas d = {0};
    CHECK(!strcmp(feed_str(p, TC "call:write{body:" Q, &d), "s:write|a:{\"body\":\"|"));
    CHECK(!strcmp(feed_str(p, "a long \"text\"", &d), "a:a long \\\"text\\\"|"));
    CHECK(!strcmp(feed_str(p, " more<|", &d), "a: more|"));
    CHECK(!strcmp(feed_str(p, "\"|>,n:tru", &d), "a:\"|"));
    CHECK(!strcmp(feed_str(p, "e,m:1", &d), "a:,\"n\":true|"));
    CHECK(!strcmp(feed_str(p, "2}" TCE, &d), "a:,\"m\":12}|"));
    CHECK(outp_num_tool_calls(p) == 1);
    outp_deltas_free(&d);
    outp_free(p);
}

static void test_bare_call_needs_tools(void) {
    const char *text = "<channel|>call:f{a:1}";
    json_t *acc = run_whole(text, false, false);
    CHECK(!strcmp(str_or_empty(acc, "content"), "call:f{a:1}"));
    CHECK(json_object_get(acc, "tool_calls") == NULL);
    json_decref(acc);
    acc = run_whole(TC "call:f{a:1}" TCE, false, false); /* explicit blocks still parse */
    CHECK(json_array_size(json_object_get(acc, "tool_calls")) == 1);
    json_decref(acc);
}

/* A prompt that ends inside an open channel: the output starts as reasoning. */
static void test_prompt_in_reasoning(void) {
    outp_opts o = {.enable_thinking = true, .tools_enabled = true, .in_reasoning = true, .id_seed = 1};
    outp *p = outp_create(&o);
    outp_deltas d = {0};
    CHECK(!strcmp(feed_str(p, "The tool said 3.", &d), "r:The tool said 3.|"));
    CHECK(!strcmp(feed_str(p, "<channel|>It is 3.", &d), "c:It is 3.|"));
    outp_deltas_free(&d);
    outp_free(p);
}

static void test_utf8_split_is_held(void) {
    outp_opts o = {.id_seed = 1};
    outp *p = outp_create(&o);
    outp_deltas d = {0};
    CHECK(!strcmp(feed_str(p, "caf\xc3", &d), "c:caf|"));
    CHECK(!strcmp(feed_str(p, "\xa9 \xf0\x9f", &d), "c:\xc3\xa9|"));
    CHECK(!strcmp(feed_str(p, "\x99\x82!", &d), "c: \xf0\x9f\x99\x82!|"));
    outp_deltas_free(&d);
    outp_free(p);
}

static void test_ids_unique(void) {
    outp_opts o = {.tools_enabled = true}; /* seed from the OS */
    outp *p = outp_create(&o);
    outp_deltas d = {0};
    const char *text = TC "call:a{}call:b{}call:c{}" TCE;
    CHECK(outp_feed(p, text, strlen(text), &d) == 0);
    CHECK(outp_finish(p, &d) == 0);
    REQUIRE(d.n == 6);
    for (int i = 0; i < 3; i++) {
        CHECK(d.v[2 * i].kind == OUTP_TOOL_START && d.v[2 * i].index == i);
        CHECK(strlen(d.v[2 * i].id) == 29 && !strncmp(d.v[2 * i].id, "call_", 5));
        for (int j = 0; j < i; j++) CHECK(strcmp(d.v[2 * i].id, d.v[2 * j].id) != 0);
    }
    outp_deltas_free(&d);
    outp_free(p);
}

static void test_many_calls(void) {
    char text[4096] = TC;
    for (int i = 0; i < 20; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "call:f%d{i:%d,s:" Q "v%d" Q "}", i, i, i);
    strcat(text, TCE);
    json_t *acc = run_whole(text, false, true);
    json_t *calls = json_object_get(acc, "tool_calls");
    REQUIRE(json_array_size(calls) == 20);
    for (int i = 0; i < 20; i++) {
        json_t *fn = json_object_get(json_array_get(calls, i), "function");
        char name[16];
        snprintf(name, sizeof name, "f%d", i);
        CHECK(!strcmp(str_or_empty(fn, "name"), name));
        json_t *args = json_loads(str_or_empty(fn, "arguments"), 0, NULL);
        CHECK(json_integer_value(json_object_get(args, "i")) == i);
        json_decref(args);
    }
    json_decref(acc);
}

/* Random soup of delimiters and syntax: the parser must never emit <|"|>,
 * must complete every call into a JSON object, and must not depend on the
 * chunking. */
static void test_fuzz(void) {
    static const char *const alphabet[] = {
        "<|channel>", "<channel|>", TC, TCE, Q, "<turn|>", "<eos>", "<|tool_response>", "call:", "call:f{",
        "get_weather", "f", "{", "}", "(", ")", "[", "]", ",", ":", "=", " ", "\n", "abc", "1", "-2.5", "true",
        "None", "<", ">", "é", "日本", "\"", "\\", "thought\n", "thought", "x y", "<|", "<tool", "\t",
    };
    const int na = (int)(sizeof alphabet / sizeof alphabet[0]);
    uint64_t rng = 12345;
    static size_t cuts[4096];
    for (int iter = 0; iter < 3000; iter++) {
        char text[2048] = "";
        int pieces = 1 + (int)(rng_next(&rng) % 40);
        for (int k = 0; k < pieces; k++) strcat(text, alphabet[rng_next(&rng) % na]);
        bool thinking = rng_next(&rng) & 1, tools = rng_next(&rng) % 4 != 0;
        json_t *whole = run_whole(text, thinking, tools);
        json_t *calls = json_object_get(whole, "tool_calls");
        for (size_t i = 0; i < json_array_size(calls); i++) {
            json_t *fn = json_object_get(json_array_get(calls, i), "function");
            json_t *args = json_loads(str_or_empty(fn, "arguments"), 0, NULL);
            CHECKF(json_is_object(args), "fuzz: bad arguments %s for %s", str_or_empty(fn, "arguments"), text);
            json_decref(args);
        }
        int n = random_cuts(&rng, strlen(text), 1 + iter % 7, cuts);
        json_t *split = run_cuts(text, thinking, tools, cuts, n, text);
        pcase c = {.name = text};
        check_same(&c, whole, split, "fuzz", (size_t)iter);
        json_decref(whole);
        json_decref(split);
        if (t_failures > 10) return;
    }
}

TEST_MAIN("output_parser", TEST_CASE(test_corpus_whole), TEST_CASE(test_corpus_every_boundary),
          TEST_CASE(test_corpus_byte_by_byte), TEST_CASE(test_corpus_random_chunks),
          TEST_CASE(test_holds_partial_delimiters), TEST_CASE(test_arguments_stream_incrementally),
          TEST_CASE(test_bare_call_needs_tools), TEST_CASE(test_prompt_in_reasoning),
          TEST_CASE(test_utf8_split_is_held), TEST_CASE(test_ids_unique),
          TEST_CASE(test_many_calls), TEST_CASE(test_fuzz))
