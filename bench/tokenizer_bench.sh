#!/usr/bin/env bash
# Tokenizer benchmark (not a test): load time of tokenizer.json and encode
# throughput on one thread over the gsm8k test set (questions and answers,
# one encode call per string, repeated for 2 s).
#   bench/tokenizer_bench.sh [tokenizer.json]   (default: the fetched Gemma 4 one)
set -euo pipefail
cd "$(dirname "$0")/.."
TOK=${1:-tests/data/tokenizers/gemma4/tokenizer.json}
IN=$(mktemp)
trap 'rm -f "$IN"' EXIT
node -e '
const fs = require("fs");
for (const l of fs.readFileSync("/work/shared/data/gsm8k/test.jsonl", "utf8").split("\n"))
  if (l) { const r = JSON.parse(l); console.log(JSON.stringify(r.question)); console.log(JSON.stringify(r.answer)); }
' >"$IN"
for i in 1 2 3; do build/g4 tokenize --tokenizer "$TOK" --jsonl --bench <"$IN"; done
