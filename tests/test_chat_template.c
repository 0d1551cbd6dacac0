/* The native chat template: the renders of ../shared/data/gemma4/
 * render_examples.md, every refusal with its message, and the Python value
 * semantics underneath. tests/t_template_jinja.sh compares hundreds of
 * requests with Jinja2 itself. */
#include "test.h"
#include "text/chat_template.h"
#include "text/chat_value.h"
#include "util/sha256.h"

/* Renders request JSON; returns the prompt (free it) or NULL with err. */
static char *render(const char *json, chat_variant v, g4_err *err) {
    json_error_t je;
    json_t *req = json_loads(json, 0, &je);
    if (!req) {
        fprintf(stderr, "  bad test JSON: %s: %s\n", je.text, json);
        return NULL;
    }
    err->msg[0] = 0;
    char *out = chat_render(req, v, NULL, err);
    json_decref(req);
    return out;
}

#define WEATHER_TOOL                                                                       \
    "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Get " \
    "the current weather for a city.\",\"parameters\":{\"type\":\"object\",\"properties\":" \
    "{\"city\":{\"type\":\"string\",\"description\":\"City name, e.g. Paris\"},\"days\":"  \
    "{\"type\":\"integer\",\"description\":\"Number of forecast days (1-7)\"}},"           \
    "\"required\":[\"city\"]}}}"
#define USER_Q "{\"role\":\"user\",\"content\":\"What's the weather in Paris for the next 2 days?\"}"
#define CALL(args)                                                                          \
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\",\"type\":" \
    "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":" args "}}]}"
#define RESULT                                                                       \
    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"{\\\"forecast\\\": " \
    "[\\\"sunny 21C\\\", \\\"cloudy 18C\\\"]}\"}"

#define SYSTEM_WITH_TOOL                                                                       \
    "<bos><|turn>system\n<|tool>declaration:get_weather{description:<|\"|>Get the current "    \
    "weather for a city.<|\"|>,parameters:{properties:{city:{description:<|\"|>City name, "    \
    "e.g. Paris<|\"|>,type:<|\"|>STRING<|\"|>},days:{description:<|\"|>Number of forecast "    \
    "days (1-7)<|\"|>,type:<|\"|>INTEGER<|\"|>}},required:[<|\"|>city<|\"|>],type:<|\"|>"      \
    "OBJECT<|\"|>}}<tool|><turn|>\n"
#define MODEL_CALL_AND_RESULT                                                                  \
    "<|turn>model\n<|tool_call>call:get_weather{city:<|\"|>Paris<|\"|>,days:2}<tool_call|>"    \
    "<|tool_response>response:get_weather{value:<|\"|>{\"forecast\": [\"sunny 21C\", "        \
    "\"cloudy 18C\"]}<|\"|>}<tool_response|>"

static void test_example_a_thinking_off(void) {
    g4_err err;
    char *p = render("{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of "
                     "France?\"}]}", CHAT_TMPL_MAINLINE, &err);
    REQUIRE(p);
    CHECKF(!strcmp(p, "<bos><|turn>user\nWhat is the capital of France?<turn|>\n<|turn>model\n"
                      "<|channel>thought\n<channel|>"), "%s", p);
    free(p);
    p = render("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", CHAT_TMPL_E2B_E4B, &err);
    REQUIRE(p);
    CHECKF(!strcmp(p, "<bos><|turn>user\nHi<turn|>\n<|turn>model\n"), "%s", p);
    free(p);
}

static void test_example_b_thinking_on(void) {
    g4_err err;
    char *p = render("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                     "\"chat_template_kwargs\":{\"enable_thinking\":true}}",
                     CHAT_TMPL_MAINLINE, &err);
    REQUIRE(p);
    CHECKF(!strcmp(p, "<bos><|turn>system\n<|think|>\n<turn|>\n<|turn>user\nHi<turn|>\n"
                      "<|turn>model\n"), "%s", p);
    free(p);
}

/* example (c), but with OpenAI's string arguments, which we parse */
static void test_example_c_tools_string_arguments(void) {
    g4_err err;
    char *p = render("{\"tools\":[" WEATHER_TOOL "],\"messages\":[" USER_Q ","
                     CALL("\"{\\\"city\\\": \\\"Paris\\\", \\\"days\\\": 2}\"") "," RESULT
                     ",{\"role\":\"user\",\"content\":\"Thanks. Should I pack an umbrella?\"}]}",
                     CHAT_TMPL_MAINLINE, &err);
    REQUIRE(p);
    CHECKF(!strcmp(p, SYSTEM_WITH_TOOL "<|turn>user\nWhat's the weather in Paris for the next 2 "
                      "days?<turn|>\n" MODEL_CALL_AND_RESULT "<turn|>\n<|turn>user\nThanks. "
                      "Should I pack an umbrella?<turn|>\n<|turn>model\n<|channel>thought\n"
                      "<channel|>"), "%s", p);
    free(p);
}

static void test_example_d_ends_on_tool_result(void) {
    g4_err err;
    char *p = render("{\"tools\":[" WEATHER_TOOL "],\"messages\":[" USER_Q ","
                     CALL("{\"city\":\"Paris\",\"days\":2}") "," RESULT "],"
                     "\"chat_template_kwargs\":{\"enable_thinking\":true}}",
                     CHAT_TMPL_MAINLINE, &err);
    REQUIRE(p);
    const char *tail = MODEL_CALL_AND_RESULT "<|channel>thought\n";
    CHECKF(strlen(p) > strlen(tail) && !strcmp(p + strlen(p) - strlen(tail), tail), "%s", p);
    free(p);
}

/* Renders json and checks the error message contains want. */
static void expect_error(const char *json, const char *want) {
    g4_err err;
    char *p = render(json, CHAT_TMPL_MAINLINE, &err);
    CHECKF(!p, "rendered: %s", p ? p : "");
    CHECKF(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    free(p);
}

static void test_error_unknown_role(void) {
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"critic\","
                 "\"content\":\"b\"}]}",
                 "messages[1].role: unknown role 'critic'");
    expect_error("{\"messages\":[{\"content\":\"a\"}]}", "messages[0].role: missing");
    expect_error("{\"messages\":[\"hello\"]}", "messages[0]: must be an object");
}

static void test_error_tool_message_without_call(void) {
    expect_error("{\"messages\":[" USER_Q "," RESULT "]}",
                 "messages[1]: role 'tool' message does not follow an assistant message with "
                 "tool_calls");
    expect_error("{\"messages\":[{\"role\":\"system\",\"content\":\"s\"}," RESULT "]}",
                 "messages[1]: role 'tool'");
    expect_error("{\"messages\":[" USER_Q ",{\"role\":\"assistant\",\"content\":\"x\"}," RESULT
                 "]}", "messages[2]: role 'tool'");
}

static void test_error_tool_call_id_unmatched(void) {
    expect_error("{\"messages\":[" USER_Q "," CALL("{}") ",{\"role\":\"tool\",\"tool_call_id\":"
                 "\"zzz\",\"content\":\"r\"}]}",
                 "messages[2].tool_call_id: 'zzz' matches no tool call of messages[1]");
    expect_error("{\"messages\":[" USER_Q "," CALL("{}") "," RESULT ",{\"role\":\"tool\","
                 "\"tool_call_id\":42,\"content\":\"r\"}]}",
                 "messages[3].tool_call_id: '42' matches no tool call of messages[1]");
}

static void test_error_bad_arguments(void) {
    expect_error("{\"messages\":[" USER_Q "," CALL("\"{\\\"city\\\": Paris}\"") "]}",
                 "messages[1].tool_calls[0].function.arguments: not valid JSON");
    expect_error("{\"messages\":[" USER_Q "," CALL("\"[1, 2]\"") "]}",
                 "messages[1].tool_calls[0].function.arguments: must be a JSON object");
    expect_error("{\"messages\":[" USER_Q "," CALL("7") "]}",
                 "messages[1].tool_calls[0].function.arguments: must be a JSON object");
    expect_error("{\"messages\":[" USER_Q ",{\"role\":\"assistant\",\"tool_calls\":[{\"function\":"
                 "{\"name\":\"f\"}}]}]}",
                 "messages[1].tool_calls[0].function.arguments: must be a JSON object");
    expect_error("{\"messages\":[" USER_Q ",{\"role\":\"assistant\",\"tool_calls\":[{\"id\":1}]}]}",
                 "messages[1].tool_calls[0].function: missing");
    expect_error("{\"messages\":[" USER_Q ",{\"role\":\"assistant\",\"tool_calls\":{\"a\":1}}]}",
                 "messages[1].tool_calls: must be a list");
}

static void test_error_content(void) {
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\","
                 "\"image_url\":\"x\"}]}]}",
                 "messages[0].content[0]: content part type 'input_image' is not supported");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":{\"text\":\"a\"}}]}",
                 "messages[0].content: must be a string, a list of content parts or null");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
                 "messages[0].content[0].text: must be a string");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":[\"text\"]}]}",
                 "messages[0].content[0]: a content part must be an object");
    expect_error("{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\",\"reasoning\":5}]}",
                 "messages[0].reasoning: must be a string");
}

static void test_error_request_shape(void) {
    expect_error("{\"model\":\"m\"}", "messages: missing or not a list");
    expect_error("{\"messages\":[],\"tools\":{\"a\":1}}", "tools: must be a list");
    expect_error("{\"messages\":[],\"tools\":[{\"type\":\"function\"}]}",
                 "tools[0].function: missing or not an object");
    expect_error("{\"messages\":[],\"tools\":[{\"function\":{\"name\":\"f\",\"parameters\":"
                 "{\"properties\":[1]}}}]}", "tools[0].function: properties must be an object");
    expect_error("{\"messages\":[],\"chat_template_kwargs\":[1]}",
                 "chat_template_kwargs: must be an object");
    g4_err err;
    json_t *arr = json_array();
    CHECK(!chat_render(arr, CHAT_TMPL_MAINLINE, NULL, &err));
    CHECK(strstr(err.msg, "request: must be a JSON object"));
    json_decref(arr);
}

static void check_str(const char *json, const char *want) {
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    strbuf sb = STRBUF_INIT;
    cv_str(&sb, v);
    CHECKF(sb.data && !strcmp(sb.data, want), "str(%s) = '%s', want '%s'", json,
           sb.data ? sb.data : "", want);
    sb_free(&sb);
    json_decref(v);
}

static void test_python_str(void) {
    check_str("1e16", "1e+16");
    check_str("1e15", "1000000000000000.0");
    check_str("0.0001", "0.0001");
    check_str("0.00001", "1e-05");
    check_str("123.456", "123.456");
    check_str("-0.0", "-0.0");
    check_str("2.0", "2.0");
    check_str("0.1", "0.1");
    check_str("5e-324", "5e-324");
    check_str("1.7976931348623157e308", "1.7976931348623157e+308");
    check_str("-12", "-12");
    check_str("null", "None");
    check_str("[true, false, null, \"it's\", \"a\\\"b\", {\"k\": 1.5}]",
              "[True, False, None, \"it's\", 'a\"b', {'k': 1.5}]");
    check_str("\"\\u0001\\u00e9\\u200b\\n\"", "\x01\xc3\xa9\xe2\x80\x8b\n");
    check_str("[\"\\u0001\\u00e9\\u200b\\n\\\\\"]", "['\\x01\xc3\xa9\\u200b\\n\\\\']");
}

static void test_python_strip_and_dictsort(void) {
    const char *s = "\xe3\x80\x80 \t x \xc2\xa0y\xe2\x80\x8b\xc2\x85\n";
    size_t off, len;
    cv_strip(s, strlen(s), &off, &len);
    CHECK(len == strlen("x \xc2\xa0y\xe2\x80\x8b") && !memcmp(s + off, "x ", 2));
    json_t *o = json_loads("{\"b\":1,\"B\":2,\"a\":3,\"_\":4,\"A\":5,\"\\u00c9\":6,\"f\":7}", 0, NULL);
    size_t n;
    const char **keys = cv_sorted_keys(o, &n);
    const char *want[] = {"_", "a", "A", "b", "B", "f", "\xc3\x89"};
    REQUIRE(keys && n == 7);
    for (size_t i = 0; i < n; i++) CHECKF(!strcmp(keys[i], want[i]), "%zu: %s", i, keys[i]);
    free(keys);
    json_decref(o);
}

static void test_sha256(void) {
    char hex[65];
    g4_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    g4_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    g4_sha256_hex(m, strlen(m), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

static chat_variant identify_file(const char *name) {
    const char *shared = getenv("G4_SHARED") ? getenv("G4_SHARED") : "../shared";
    char path[1024];
    snprintf(path, sizeof path, "%s/data/gemma4/%s", shared, name);
    FILE *f = fopen(path, "rb");
    if (!f) return (chat_variant)-1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return chat_identify(buf, n, NULL);
}

static void test_identify_templates(void) {
    chat_variant v = identify_file("chat_template.jinja");
    /* a missing file fails, as in t_template_jinja.sh: a skip here would pass without the check */
    REQUIRE((int)v != -1 && "need ../shared/data/gemma4/chat_template.jinja (set G4_SHARED)");
    CHECK(v == CHAT_TMPL_MAINLINE);
    CHECK(identify_file("chat_template_e2b_e4b.jinja") == CHAT_TMPL_E2B_E4B);
    CHECK(identify_file("chat_template_prev_v3_2026-05.jinja") == CHAT_TMPL_UNKNOWN);
    CHECK(chat_identify("{{ messages }}", 14, NULL) == CHAT_TMPL_UNKNOWN);
}

TEST_MAIN("chat_template",
          TEST_CASE(test_example_a_thinking_off),
          TEST_CASE(test_example_b_thinking_on),
          TEST_CASE(test_example_c_tools_string_arguments),
          TEST_CASE(test_example_d_ends_on_tool_result),
          TEST_CASE(test_error_unknown_role),
          TEST_CASE(test_error_tool_message_without_call),
          TEST_CASE(test_error_tool_call_id_unmatched),
          TEST_CASE(test_error_bad_arguments),
          TEST_CASE(test_error_content),
          TEST_CASE(test_error_request_shape),
          TEST_CASE(test_python_str),
          TEST_CASE(test_python_strip_and_dictsort),
          TEST_CASE(test_sha256),
          TEST_CASE(test_identify_templates))
