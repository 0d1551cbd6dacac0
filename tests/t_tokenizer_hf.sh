#!/usr/bin/env bash
# Conformance of our tokenizer with HF tokenizers (tests/node, the Rust library
# through napi) on gsm8k test (questions and answers), mt_bench turns, 10,000
# generated strings and 1,000 invalid-UTF-8 byte strings, for the Gemma 3
# tokenizer.json and the derived Gemma 4 one. Per tokenizer and data set:
#   encode     our ids == HF ids (without BOS, as a chat template that writes
#              <bos> itself needs; gsm8k_bos also checks --add-bos == HF's
#              addSpecialTokens)
#   decode     our decode of our ids == HF's decode of its ids
#   skip       the same with special tokens skipped
#   roundtrip  decode(encode(x)) == x (U+FFFD for invalid UTF-8, "▁" -> " ")
#   stream     the streaming detokenizer, one id at a time == the full decode
# Run from the repo root (tests/run.sh does). Needs tools/fetch_tokenizers.sh
# and npm ci in tests/node (tools/setup.sh does both); missing ones fail.
set -u
G4=build/g4
DATA=tests/data/tokenizers
TMP=tests/tmp/tokenizer_hf
SETS="gsm8k mt_bench generated invalid gsm8k_bos"
passed=0; failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }
summary() { echo "tokenizer_hf: $passed passed, $failed failed"; exit $((failed > 0)); }

rm -rf "$TMP" && mkdir -p "$TMP"
[ -x "$G4" ] || { fail "missing $G4 (run make)"; summary; }
[ -d tests/node/node_modules/tokenizers ] || { fail "missing tests/node/node_modules (run: cd tests/node && npm ci)"; summary; }

# Inputs, one JSON value per line.
node -e '
const fs = require("fs");
const rows = (p) => fs.readFileSync(p, "utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l));
const put = (name, xs) => fs.writeFileSync(`'"$TMP"'/${name}.in.jsonl`, xs.map((x) => JSON.stringify(x)).join("\n") + "\n");
const gsm = rows("/work/shared/data/gsm8k/test.jsonl").flatMap((r) => [r.question, r.answer]);
put("gsm8k", gsm);
put("gsm8k_bos", gsm);
put("mt_bench", rows("/work/shared/data/mt_bench/question.jsonl").flatMap((r) => r.turns));
' || { fail "cannot read the gsm8k / mt_bench data"; summary; }
node tests/node/gen_strings.js valid 10000 >"$TMP/generated.in.jsonl"
node tests/node/gen_strings.js invalid 1000 >"$TMP/invalid.in.jsonl"

check() { # name inputs expected got [--roundtrip]
    if node tests/node/check.js "$@"; then pass; else failed=$((failed + 1)); fi
}

for tk in gemma3 gemma4; do
    json="$DATA/$tk/tokenizer.json"
    if [ ! -f "$json" ]; then
        for s in $SETS; do fail "$tk/$s: missing $json (run tools/fetch_tokenizers.sh)"; done
        continue
    fi
    dir="$TMP/$tk"; mkdir -p "$dir"
    for s in $SETS; do cp "$TMP/$s.in.jsonl" "$dir/"; done
    # shellcheck disable=SC2086
    node tests/node/hf_ref.js "$json" "$dir" $SETS || { fail "$tk: hf_ref.js failed"; continue; }
    for s in $SETS; do
        in="$dir/$s.in.jsonl"
        bos=""; [ "${s%_bos}" != "$s" ] && bos=--add-bos
        $G4 tokenize --tokenizer "$json" --jsonl $bos <"$in" >"$dir/$s.ids.jsonl" || fail "$tk/$s: g4 tokenize exit $?"
        check "$tk/$s/encode" "$in" "$dir/$s.hf_ids.jsonl" "$dir/$s.ids.jsonl"
        [ -n "$bos" ] && continue
        $G4 tokenize --tokenizer "$json" --jsonl --decode <"$dir/$s.ids.jsonl" >"$dir/$s.text.jsonl"
        $G4 tokenize --tokenizer "$json" --jsonl --decode --stream <"$dir/$s.ids.jsonl" >"$dir/$s.stream.jsonl"
        $G4 tokenize --tokenizer "$json" --jsonl --decode --skip-special <"$dir/$s.ids.jsonl" >"$dir/$s.skip.jsonl"
        check "$tk/$s/decode" "$in" "$dir/$s.hf_text.jsonl" "$dir/$s.text.jsonl"
        check "$tk/$s/skip" "$in" "$dir/$s.hf_skip.jsonl" "$dir/$s.skip.jsonl"
        check "$tk/$s/roundtrip" "$in" "$in" "$dir/$s.text.jsonl" --roundtrip
        check "$tk/$s/stream" "$in" "$dir/$s.text.jsonl" "$dir/$s.stream.jsonl"
    done
done
summary
