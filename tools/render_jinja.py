#!/usr/bin/env python3
"""Renders OpenAI chat requests with a chat template the way Hugging Face
transformers does, as the reference for `g4 template`.

usage: render_jinja.py TEMPLATE < requests.jsonl > prompts.jsonl

One request per input line; one output line each: the prompt as a JSON
string, or {"error": "..."} when rendering fails. The environment is the one
shown in ../shared/data/gemma4/render_examples.md:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True), a
raise_exception global and bos_token='<bos>'.

Like HF callers (and like g4), string tool-call arguments are parsed with
json.loads before rendering, since the template wants a mapping. Template
variables: every key of chat_template_kwargs, then messages, tools and
add_generation_prompt (default true) from the request.
"""
import copy
import json
import sys

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def raise_exception(message):
    raise TemplateError(message)


def parse_arguments(messages):
    messages = copy.deepcopy(messages)
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("tool_calls"), list):
            continue
        for tc in m["tool_calls"]:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.loads(fn["arguments"])
    return messages


def render(template, req):
    kwargs = dict(req.get("chat_template_kwargs") or {})
    kwargs["messages"] = parse_arguments(req["messages"])
    kwargs["tools"] = req.get("tools")
    kwargs["add_generation_prompt"] = req.get("add_generation_prompt", True)
    kwargs["bos_token"] = "<bos>"
    return template.render(**kwargs)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    with open(sys.argv[1], encoding="utf-8") as f:
        template = env.from_string(f.read())
    out = sys.stdout
    for line in sys.stdin:
        try:
            result = render(template, json.loads(line))
        except Exception as e:  # any failure is a result to compare
            result = {"error": "%s: %s" % (type(e).__name__, e)}
        out.write(json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
