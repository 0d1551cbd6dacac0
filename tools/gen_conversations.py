#!/usr/bin/env python3
"""Generates OpenAI chat completion requests for the chat-template
conformance test (tests/t_template_jinja.sh): hand-written cases for each
template branch, then seeded random conversations that combine them.

usage: gen_conversations.py [--seed N] [--count N] > requests.jsonl

Standard library only; the same seed gives the same bytes. Requests that
g4 deliberately refuses although the template renders them (unknown roles,
orphan tool messages, unknown part types; see src/text/chat_template.h)
are not generated: tests/test_chat_template.c covers those.
"""
import argparse
import json
import random

# ---- building blocks --------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "days": {"type": "integer", "description": "Number of forecast days (1-7)"},
            },
            "required": ["city"],
        },
    },
}

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_docs",
        "description": "Search the documentation. Returns <top> hits & 'snippets'.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Free text"},
                "mode": {"type": "string", "enum": ["fast", "exact", "fuzzy"],
                         "description": "Search mode"},
                "limit": {"type": "integer", "nullable": True},
                "filters": {
                    "type": "object",
                    "description": "Narrow the search",
                    "properties": {
                        "lang": {"type": "string", "enum": ["en", "fr"]},
                        "after": {"type": "string", "description": "ISO date"},
                        "Tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["lang"],
                },
                "weights": {"type": "array", "items": {"type": "number", "minimum": 0.0,
                                                       "maximum": 1.5}},
            },
            "required": ["query", "mode"],
        },
    },
}

NESTED_TOOL = {
    "type": "function",
    "function": {
        "name": "create_order",
        "description": "Create an order with line items",
        "parameters": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "description": "Line items",
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string"},
                            "qty": {"type": "integer", "description": "How many"},
                            "options": {"type": "object", "properties": {
                                "gift": {"type": "boolean"},
                                "note": {"type": "string", "nullable": True}}},
                        },
                        "required": ["sku", "qty"],
                        "additionalProperties": False,
                        "title": None,
                    },
                    "minItems": 1,
                },
                "customer": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "free-form map",
                    "maxProperties": 4,
                },
                "priority": {"type": ["string", "null"], "description": "or null"},
                "codes": {"type": "array", "items": {"type": ["string", "integer"],
                                                     "enum": [1, "A", 2.5, True, None]}},
                "Zeta": {"type": "NUMBER"},
                "alpha": {"type": "boolean", "default": False},
                "matrix": {"type": "array", "items": {"type": "array",
                                                      "items": {"type": "number"}}},
            },
            "required": ["items"],
        },
        "response": {"type": "object", "description": "The created order"},
    },
}

ODD_TOOLS = [
    {"type": "function", "function": {"name": "ping"}},
    {"type": "function", "function": {"name": "noop", "description": "",
                                      "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "untyped", "description": None,
                                      "parameters": {"properties": {"x": {"type": "string"}},
                                                     "required": ["x"]}}},
    {"type": "function", "function": {"name": "resp_str", "description": "  padded  ",
                                      "parameters": {"type": "object", "properties": {
                                          "a": {"type": "string"}}},
                                      "response": {"type": "string", "description": "text"}}},
    {"type": "function", "function": {"name": "resp_null", "description": "r",
                                      "response": None}},
    {"type": "function", "function": {"name": "enum_num", "description": "numbers",
                                      "parameters": {"type": "object", "properties": {
                                          "n": {"type": "integer", "enum": [1, 2, 3]},
                                          "s": {"type": "string", "enum": []},
                                          "f": {"type": "string", "enum": [0.5, 1e16, 1e-5,
                                                                           -0.0, 12345678.9]},
                                          "d": {"description": 42, "type": "string"},
                                          "e": {"description": ["x", "y's"], "type": "object"},
                                      }}}},
    {"type": "function", "function": {"name": "cased_keys", "description": "sort order",
                                      "parameters": {"type": "object", "properties": {
                                          "b": {"type": "string"}, "A": {"type": "string"},
                                          "a": {"type": "integer"}, "B": {"type": "boolean"},
                                          "_x": {"type": "string"}, "é": {"type": "string"},
                                          "Z1": {"type": "string"}, "Éa": {"type": "string"},
                                          "éb": {"type": "string"}, "Ωz": {"type": "string"},
                                          "ωa": {"type": "string"}, "Ža": {"type": "string"},
                                          "žb": {"type": "string"}, "Ёx": {"type": "string"},
                                          "еy": {"type": "string"}, "Ŀ": {"type": "string"},
                                          "ŀ0": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "obj_no_props", "description": "map",
                                      "parameters": {"type": "object", "properties": {
                                          "m": {"type": "object", "nullable": True,
                                                "required": ["k"], "propertyNames": {
                                                    "pattern": "^[a-z]+$"}},
                                          "n": {"type": "object", "properties": None},
                                          "o": {"type": "object", "properties": "bad"},
                                      }}}},
    {"type": "function", "function": {"name": "items_edge", "description": "items",
                                      "parameters": {"type": "object", "properties": {
                                          "l1": {"type": "array", "items": {}},
                                          "l2": {"type": "array", "items": {
                                              "type": "object", "required": "ab",
                                              "properties": {"q": {"type": "string"}}}},
                                          "l3": {"type": "array", "items": {
                                              "properties": ["not", "a", "map"],
                                              "description": "list items"}},
                                          "l4": {"type": "array", "items": [{"type": "string"}]},
                                      }}}},
    {"type": "function", "function": {"name": "py_values", "description": True,
                                      "parameters": {"type": "object", "properties": {
                                          "d": {"type": "string", "description": {
                                              "k": "é\x01\u200b\U0001F600\x7f\xa0\ue000\U000F0001中",
                                              "q": "it's \"quoted\"", "b": True, "f": False,
                                              "n": None, "l": [1.5, -2, {}], "\\": "\t\n\r"}},
                                          "n0": {"type": "integer", "nullable": 0.0,
                                                 "description": 0.25},
                                          "u1": {"type": "straße", "description": "ß"},
                                          "u2": {"type": "Ärray", "items": {"type": "ÿ"}},
                                          "u3": {"type": "array", "items": {
                                              "type": {"string": 1, "ñull": 2}}},
                                          "u4": {"type": "objeçt", "enum": ["Ωmega"]},
                                          "u5": {"type": "string", "enum": ["x"],
                                                 "description": "ĳ ŀ ő ź Ÿ ж ё ς µ"},
                                          "u6": {"type": "ĳŀőźÿжёςµ"},
                                          "r1": {"type": "object", "required": {"x": 1, "y": 2},
                                                 "properties": {"x": {"type": "string"}}},
                                      }}}},
    {"type": "function", "function": {"name": "unicode_tool",
                                      "description": "Übersetze — 翻译 🌍 text\nline2",
                                      "parameters": {"type": "object", "properties": {
                                          "texte": {"type": "string",
                                                    "description": "le «texte» à traduire"},
                                          "langue": {"type": "string",
                                                     "enum": ["fr", "de", "中文"]}},
                                          "required": ["texte"]}}},
]

USER_TEXTS = [
    "What is the capital of France?",
    "  leading and trailing spaces  ",
    "\n\nnewlines around\n\n",
    "Unicode: naïve café, 日本語, emoji 🎉, RTL שלום",
    "",
    "   ",
    "\u3000ideographic space\u3000",
    "\xa0nbsp\xa0",
    "tabs\tinside\tand\ttrailing\t",
    "Quotes \"double\" and 'single' and back\\slash",
    "Looks like a tag <|turn>user but is text",
    "line1\r\nline2\r\n",
    "\u2028line separator\u2029",
    "Math: 3 < 5 && 5 > 3",
    "null",
    "\x1c\x85\u2003 odd spaces \u205f\u200b",
    "\u200bzero width is not space\u200b",
]

MODEL_TEXTS = [
    "Paris.",
    "  The answer is 42.  ",
    "<|channel>thought\nsecret reasoning<channel|>Final answer.",
    "Before<|channel>hidden<channel|> after",
    "Unclosed <|channel>thinking that never ends",
    "a<channel|>b<channel|>c",
    "<|channel>t1<channel|>mid<|channel>t2<channel|>end",
    "",
    "Ça marche ✓",
    "\n",
]

REASONINGS = ["I should check the weather.", "Let me think step by step.\nStep 1.",
              "  spaced reasoning  ", "", "思考中…"]

ARGS = [
    {"city": "Paris", "days": 2},
    {"query": "kv cache", "mode": "fast", "limit": None},
    {"Zeta": 1, "alpha": True, "beta": False, "B": [1, 2.5, "x"], "a": {"n": None}},
    {"nested": {"list": [{"k": "v"}, [1, [2, [3]]]], "empty": {}, "el": []}},
    {"f": 0.1, "g": 1e16, "h": 1e-5, "i": -0.0, "j": 123456789012, "k": 2.0, "l": 1.5e300},
    {"text": "multi\nline \"quoted\" <b>&amp;</b> 'single'", "uni": "naïve 🌍"},
    {},
    {"s": "", "t": "  padded  "},
]

RESULTS = [
    '{"forecast": ["sunny 21C", "cloudy 18C"]}',
    "plain text result",
    "",
    "  spaced result  ",
    None,
    [{"type": "text", "text": "part one "}, {"type": "text", "text": "part two"}],
    [{"type": "text", "text": "see image"}, {"type": "image_url",
                                              "image_url": {"url": "data:,"}}],
    [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
     {"type": "video"}, {"type": "text", "text": "av"}],
    [],
    "résultat ✓",
]


def call(rng, i, name=None, args=None, as_string=None, with_id=True):
    name = name or rng.choice(["get_weather", "search_docs", "create_order", "ping"])
    args = rng.choice(ARGS) if args is None else args
    if as_string is None:
        as_string = rng.random() < 0.7
    fn = {"name": name, "arguments": json.dumps(args, ensure_ascii=rng.random() < 0.5)
          if as_string else args}
    tc = {"type": "function", "function": fn}
    if with_id:
        tc["id"] = "call_%d" % i
    return tc


def content_value(rng, text, parts_ok=True):
    r = rng.random()
    if not parts_ok or r < 0.6:
        return text
    if r < 0.7:
        return None
    parts = [{"type": "text", "text": text}]
    for _ in range(rng.randrange(3)):
        kind = rng.choice(["image_url", "input_audio", "image", "audio", "video", "text"])
        if kind == "text":
            parts.append({"type": "text", "text": rng.choice(USER_TEXTS)})
        elif kind == "image_url":
            parts.append({"type": "image_url", "image_url": {"url": "http://x/y.png"}})
        else:
            parts.append({"type": kind})
    rng.shuffle(parts)
    return parts


# ---- hand-written cases ------------------------------------------------------

def req(messages, **extra):
    r = {"model": "gemma-4", "messages": messages}
    r.update(extra)
    return r


def thinking(on):
    return {"chat_template_kwargs": {"enable_thinking": on}}


def fixed_cases():
    U = {"role": "user", "content": "What's the weather in Paris for the next 2 days?"}
    C = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]}
    T = {"role": "tool", "tool_call_id": "call_1",
         "content": "{\"forecast\": [\"sunny 21C\", \"cloudy 18C\"]}"}
    U2 = {"role": "user", "content": "Thanks. Should I pack an umbrella?"}
    tools = [WEATHER_TOOL]
    cases = [
        req([{"role": "user", "content": "What is the capital of France?"}]),
        req([{"role": "user", "content": "What is the capital of France?"}], **thinking(True)),
        req([U, C, T, U2], tools=tools),
        req([U, C, T], tools=tools, **thinking(True)),
        req([U, C, T], tools=tools),
        req([U, C], tools=tools),
        req([U, C], tools=tools, **thinking(True)),
        req([]),
        req([], **thinking(True)),
        req([], tools=tools),
        req([{"role": "system", "content": "  Be brief.  "}]),
        req([{"role": "developer", "content": "Dev rules"}, U]),
        req([{"role": "system", "content": [{"type": "text", "text": " a "},
                                            {"type": "text", "text": "b"},
                                            {"type": "image_url", "image_url": {"url": "u"}}]},
             U], **thinking(True)),
        req([{"role": "system", "content": None}, U], tools=tools),
        req([{"role": "system", "content": "sys"}, {"role": "system", "content": "second sys"},
             U, {"role": "developer", "content": " mid dev "}, U2]),
        req([U], add_generation_prompt=False),
        req([U, {"role": "assistant", "content": "Sure."}], add_generation_prompt=False),
        req([U], add_generation_prompt=None),
        req([U], chat_template_kwargs={"enable_thinking": "false"}),
        req([U], chat_template_kwargs={"enable_thinking": None, "preserve_thinking": True}),
        req([U], chat_template_kwargs={}),
        req([U], chat_template_kwargs=None),
        # reasoning before/after the last user message, preserve_thinking
        req([U, {"role": "assistant", "content": "ok", "reasoning": "old thoughts"}, U2]),
        req([U, {"role": "assistant", "content": "ok", "reasoning_content": "new thoughts"}]),
        req([U, dict(C, reasoning="call reasoning"), T, U2], tools=tools,
            chat_template_kwargs={"preserve_thinking": True}),
        req([U, dict(C, reasoning="call reasoning"), T, U2], tools=tools),
        req([U, dict(C, reasoning="", reasoning_content="fallback rc"), T,
             {"role": "assistant", "content": "It will rain.", "reasoning": "r2"}], tools=tools,
            **thinking(True)),
        # several calls and results, ids missing, names
        req([U, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather",
                                                          "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "b", "type": "function", "function": {"name": "search_docs",
                                                          "arguments": {"query": "x"}}}]},
             {"role": "tool", "tool_call_id": "b", "content": "docs"},
             {"role": "tool", "tool_call_id": "a", "content": "sun"},
             {"role": "assistant", "content": "Done."}, U2], tools=[WEATHER_TOOL, SEARCH_TOOL]),
        req([U, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "f1", "arguments": "{}"}},
            {"type": "function", "function": {"name": "f2", "arguments": "null"}}]},
             {"role": "tool", "content": "r1"},
             {"role": "tool", "name": "explicit_name", "content": "r2"}]),
        req([U, {"role": "assistant", "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "f1", "arguments": None}}]},
             {"role": "tool", "name": "by_name", "content": "r"}]),
        req([U, {"role": "assistant", "tool_calls": [
            {"id": 7, "type": "function", "function": {"name": "num_id", "arguments": "{}"}}]},
             {"role": "tool", "tool_call_id": 7.0, "content": {"k": "v"} and "r"}]),
        req([U, {"role": "assistant", "tool_calls": [
            {"id": 3, "type": "function", "function": {"name": "int_id", "arguments": "{}"}},
            {"id": [1, {"a": 2}], "type": "function", "function": {"name": "list_id",
                                                                   "arguments": {}}}]},
             {"role": "tool", "tool_call_id": 3, "content": "r3"},
             {"role": "tool", "tool_call_id": [1, {"a": 2}], "content": "rl"}]),
        # legacy tool_responses
        req([U, {"role": "assistant", "content": "", "tool_calls": [call(random.Random(1), 1)],
                 "tool_responses": [{"name": "get_weather", "response": {"temp": 21, "unit": "C"}},
                                    {"response": "no name"}, {"name": "", "response": [1, 2]}]},
             U2], tools=tools),
        req([U, {"role": "assistant", "content": "",
                 "tool_responses": [{"name": "w", "response": None}]}], **thinking(True)),
        # continuation: assistant after assistant, assistant after tool results
        req([U, {"role": "assistant", "content": "part 1"},
             {"role": "assistant", "content": "part 2"}]),
        req([U, C, T, {"role": "assistant", "content": "It will be sunny."},
             {"role": "assistant", "content": "Anything else?"}, U2], tools=tools),
        req([U, C, T, {"role": "assistant", "content": ""}], tools=tools),
        req([U, C, {"role": "assistant", "content": "no results yet"}], tools=tools),
        req([U, dict(C, content="Calling now."), T], tools=tools, **thinking(True)),
        # tool results of every shape
        req([U, C, dict(T, content=None)], tools=tools),
        req([U, C, {"role": "tool", "tool_call_id": "call_1"}], tools=tools),
        req([U, C, dict(T, content=RESULTS[6])], tools=tools, **thinking(True)),
        req([U, C, dict(T, content=RESULTS[7])], tools=tools),
        req([U, C, dict(T, content=[])], tools=tools),
        # multimodal user content
        req([{"role": "user", "content": [
            {"type": "text", "text": "  Describe  "}, {"type": "image_url",
                                                      "image_url": {"url": "http://x"}},
            {"type": "input_audio", "input_audio": {"data": "", "format": "mp3"}},
            {"type": "image"}, {"type": "audio"}, {"type": "video"},
            {"type": "text", "text": " end "}]}]),
        req([{"role": "user", "content": []}]),
        req([{"role": "user", "content": None}, {"role": "assistant", "content": [
            {"type": "text", "text": "<|channel>x<channel|> shown "},
            {"type": "image_url", "image_url": {"url": "u"}}]}]),
        # tools of every shape
        req([U], tools=[SEARCH_TOOL, NESTED_TOOL]),
        req([U], tools=ODD_TOOLS, **thinking(True)),
        req([U], tools=[]),
        req([U], tools=None, **thinking(False)),
        req([{"role": "system", "content": "You can call tools."}, U], tools=ODD_TOOLS[:4]),
        # calls whose arguments the template rejects (both sides must fail)
        req([U, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{bad json"}}]}]),
        req([U, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}]),
        req([U, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": 5}}]}]),
        req([U, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f"}}]}]),
    ]
    for c in cases:
        yield c


# ---- random conversations ----------------------------------------------------

def random_tool_round(rng, messages, next_id):
    n_calls = rng.choice([1, 1, 2, 3])
    with_ids = rng.random() < 0.85
    calls = [call(rng, next_id + k, with_id=with_ids) for k in range(n_calls)]
    asst = {"role": "assistant", "content": rng.choice(["", None, "Let me check.",
                                                       "<|channel>plan<channel|>Checking."]),
            "tool_calls": calls}
    if rng.random() < 0.4:
        asst[rng.choice(["reasoning", "reasoning_content"])] = rng.choice(REASONINGS)
    messages.append(asst)
    n_results = n_calls if rng.random() < 0.85 else rng.randrange(n_calls + 1)
    order = list(range(n_calls))
    rng.shuffle(order)
    for k in order[:n_results]:
        t = {"role": "tool", "content": rng.choice(RESULTS)}
        if with_ids:
            t["tool_call_id"] = calls[k]["id"]
        if rng.random() < 0.3:
            t["name"] = calls[k]["function"]["name"]
        messages.append(t)
    return next_id + n_calls, n_results


def random_assistant(rng):
    m = {"role": "assistant", "content": content_value(rng, rng.choice(MODEL_TEXTS))}
    if rng.random() < 0.35:
        m[rng.choice(["reasoning", "reasoning_content"])] = rng.choice(REASONINGS)
    return m


def random_conversation(rng):
    messages = []
    if rng.random() < 0.4:
        role = rng.choice(["system", "system", "developer"])
        messages.append({"role": role, "content": content_value(
            rng, rng.choice(["You are helpful.", "  Answer in French.  ", "", "Règles: ✓"]))})
    next_id = 1
    for _ in range(rng.randrange(1, 5)):
        messages.append({"role": "user", "content": content_value(rng, rng.choice(USER_TEXTS))})
        r = rng.random()
        if r < 0.45:
            next_id, n_results = random_tool_round(rng, messages, next_id)
            if n_results and rng.random() < 0.7:
                messages.append(random_assistant(rng))
        elif r < 0.9:
            messages.append(random_assistant(rng))
            if rng.random() < 0.15:
                messages.append(random_assistant(rng))
        if rng.random() < 0.05:
            messages.append({"role": rng.choice(["system", "developer"]), "content": "Mid note"})
    if rng.random() < 0.3 and messages[-1]["role"] == "assistant":
        messages.pop()
    extra = {}
    if rng.random() < 0.5:
        extra["tools"] = rng.sample([WEATHER_TOOL, SEARCH_TOOL, NESTED_TOOL] + ODD_TOOLS,
                                    rng.randrange(1, 4))
    kw = {}
    if rng.random() < 0.6:
        kw["enable_thinking"] = rng.random() < 0.5
    if rng.random() < 0.3:
        kw["preserve_thinking"] = rng.random() < 0.7
    if kw or rng.random() < 0.2:
        extra["chat_template_kwargs"] = kw
    if rng.random() < 0.2:
        extra["add_generation_prompt"] = rng.random() < 0.5
    return req(messages, **extra)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--count", type=int, default=220, help="random conversations")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = list(fixed_cases()) + [random_conversation(rng) for _ in range(args.count)]
    for r in out:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main()
