#!/usr/bin/env bash
# `make run`: generate text with g4. MODEL=DIR runs that checkpoint (a real
# gemma-4-12B-it, fp8_pb_wo or BF16); without it, a small built-in model is
# made first: the tiny preset (6 layers, hidden 256, the real 262144-token
# vocabulary and tokenizer) with random weights, so the text is gibberish but
# every stage runs: chat template -> tokenizer -> engine -> sampler -> detokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
g4=build/g4
model=${1:-}
if [ -z "$model" ]; then
    model=models/tiny
    if [ ! -f "$model/config.json" ]; then
        echo "making the built-in demo model in $model ..."
        $g4 synth --preset tiny --dtype fp8 --seed 1 --out "$model"
        cp tests/data/tokenizers/gemma4/tokenizer.json "$model/"
        cp ../shared/data/gemma4/chat_template.jinja "$model/" 2>/dev/null || true
    fi
fi
question=${PROMPT:-"Write one sentence about the sea."}
request=$(printf '{"messages":[{"role":"user","content":%s}]}' "$(printf '%s' "$question" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')")
prompt=$(printf '%s' "$request" | $g4 template --builtin mainline)
echo "prompt: $prompt"
echo "---"
$g4 generate --model-path "$model" --prompt "$prompt" --no-bos --max-tokens "${MAX_TOKENS:-48}" --seed 1
