#!/usr/bin/env bash
# Conformance of the native chat template (g4 template) with Jinja2: every
# request from tools/gen_conversations.py is rendered by both, for the
# mainline and the E2B/E4B template, and compared byte for byte; a request
# passes when both give the same prompt or both refuse it. Also checks the
# single-request mode and that an unsupported template is refused.
# Shared data: $G4_SHARED, else ../shared beside the checkout.
set -u
cd "$(dirname "$0")/.."
name=template_jinja
shared=${G4_SHARED:-../shared}
tdir=$shared/data/gemma4
tmp=tests/tmp/$name
rm -rf "$tmp" && mkdir -p "$tmp"
passed=0; failed=0
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
ok() { echo "ok   $*"; passed=$((passed + 1)); }

py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import jinja2' 2>/dev/null; then
        py=$cand; break
    fi
done
if [ -z "$py" ]; then
    echo "FAIL no python3 with jinja2 (tools/setup.sh installs python3-jinja2)"
    echo "$name: 0 passed, 1 failed"; exit 1
fi
if [ ! -f "$tdir/chat_template.jinja" ] || [ ! -x build/g4 ]; then
    echo "FAIL need $tdir/chat_template.jinja (set G4_SHARED) and build/g4"
    echo "$name: 0 passed, 1 failed"; exit 1
fi

"$py" tools/gen_conversations.py >"$tmp/requests.jsonl"

# compare WANT GOT LABEL: prints per-request failures (first 5 in full) and
# the counts as "P F" on the last line
compare() {
    "$py" - "$@" <<'PY'
import json, sys
want = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
got = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
reqs = open(sys.argv[4], encoding="utf-8").read().splitlines()
p = f = 0
if len(want) != len(got):
    print("FAIL %s: %d Jinja renders, %d g4 renders" % (sys.argv[3], len(want), len(got)))
    f += 1
for i, (w, g) in enumerate(zip(want, got)):
    if w == g or (isinstance(w, dict) and isinstance(g, dict)):
        p += 1
        continue
    f += 1
    print("FAIL %s request %d" % (sys.argv[3], i))
    if f <= 5:
        print("  request: %s" % reqs[i][:2000])
        if isinstance(w, str) and isinstance(g, str):
            k = next((j for j in range(min(len(w), len(g))) if w[j] != g[j]), min(len(w), len(g)))
            print("  first difference at char %d" % k)
            print("  jinja: %r" % w[max(0, k - 80):k + 80])
            print("  g4:    %r" % g[max(0, k - 80):k + 80])
        else:
            print("  jinja: %r" % (w if isinstance(w, dict) else w[:300]))
            print("  g4:    %r" % (g if isinstance(g, dict) else g[:300]))
print(p, f)
PY
}

for variant in chat_template.jinja chat_template_e2b_e4b.jinja; do
    want=$tmp/want_$variant.jsonl got=$tmp/got_$variant.jsonl
    "$py" tools/render_jinja.py "$tdir/$variant" <"$tmp/requests.jsonl" >"$want"
    build/g4 template --chat-template "$tdir/$variant" --jsonl <"$tmp/requests.jsonl" >"$got" \
        2>"$tmp/stderr"
    out=$(compare "$want" "$got" "$variant" "$tmp/requests.jsonl")
    counts=$(tail -n 1 <<<"$out")
    sed '$d' <<<"$out"
    errs=$(grep -c '"error"' "$got")
    echo "$variant: $counts (passed failed) over $(wc -l <"$tmp/requests.jsonl") requests," \
         "$errs refused by both"
    passed=$((passed + ${counts% *})); failed=$((failed + ${counts#* }))
done

# single-request mode: raw bytes on stdout, exactly
for i in 0 2 3 60; do
    sed -n "$((i + 1))p" "$tmp/requests.jsonl" >"$tmp/one.json"
    "$py" - "$tmp/want_chat_template.jinja.jsonl" "$i" >"$tmp/one.want" <<'PY'
import json, sys
line = open(sys.argv[1], encoding="utf-8").read().splitlines()[int(sys.argv[2])]
sys.stdout.buffer.write(json.loads(line).encode("utf-8"))
PY
    build/g4 template --chat-template "$tdir/chat_template.jinja" <"$tmp/one.json" >"$tmp/one.got"
    if cmp -s "$tmp/one.want" "$tmp/one.got"; then ok "single request $i"; else fail "single request $i"; fi
done

# --model-path: chat_template.jinja, else tokenizer_config.json's chat_template
mkdir -p "$tmp/model_a" "$tmp/model_b"
cp "$tdir/chat_template_e2b_e4b.jinja" "$tmp/model_a/chat_template.jinja"
"$py" -c 'import json,sys; json.dump({"chat_template": open(sys.argv[1]).read().rstrip("\n")}, open(sys.argv[2], "w"))' \
    "$tdir/chat_template.jinja" "$tmp/model_b/tokenizer_config.json"
sed -n 1p "$tmp/requests.jsonl" >"$tmp/one.json"
a=$(build/g4 template --model-path "$tmp/model_a" <"$tmp/one.json")
b=$(build/g4 template --model-path "$tmp/model_b" <"$tmp/one.json")
if [[ "$a" == *"<|turn>model" && "$b" == *"<|turn>model"$'\n'"<|channel>thought"$'\n'"<channel|>" ]]; then ok "model-path"; else fail "model-path: '$a' '$b'"; fi

# an unsupported template is refused, and rendered only when allowed
if build/g4 template --chat-template "$tdir/chat_template_prev_v3_2026-05.jinja" \
        <"$tmp/one.json" >/dev/null 2>"$tmp/err"; then
    fail "prev_v3 template accepted"
elif grep -q "not a supported Gemma 4 chat template" "$tmp/err"; then
    ok "prev_v3 template refused"
else
    fail "prev_v3 refused without the message: $(cat "$tmp/err")"
fi
if build/g4 template --chat-template "$tdir/chat_template_prev_v3_2026-05.jinja" \
        --allow-unknown-template <"$tmp/one.json" >/dev/null 2>"$tmp/err" &&
        grep -q "warning" "$tmp/err"; then
    ok "unknown template allowed with a warning"
else
    fail "--allow-unknown-template"
fi

echo "$name: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
