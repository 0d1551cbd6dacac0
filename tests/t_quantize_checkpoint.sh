#!/usr/bin/env bash
# g4 quantize on a small BF16 checkpoint: the output's JSON and tensors
# checked field by field by an independent reader (python json + struct),
# and loaded back by g4 itself. Also: malformed input gets a clear error.
set -u
cd "$(dirname "$0")/.."
tmp=tests/tmp/quantize_ckpt; rm -rf "$tmp"; mkdir -p "$tmp"
g4=build/g4
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "  FAIL $*"; }

$g4 synth --preset tests/fixtures/configs/small_unified.json --dtype bf16 --seed 7 --out "$tmp/bf16" 2>/dev/null \
    && ok || bad "synth"
for calib in max mse; do
    if $g4 quantize --in "$tmp/bf16" --out "$tmp/$calib" --calib $calib --kv-cache fp8 2>"$tmp/log"; then ok; else bad "quantize $calib: $(cat "$tmp/log")"; fi
    python3 tools/check_modelopt_checkpoint.py "$tmp/$calib" "$tmp/bf16" --kv-cache-fp8 >"$tmp/check" 2>&1
    if [ $? -eq 0 ]; then ok; else bad "independent check ($calib):"; cat "$tmp/check"; fi
    $g4 inspect "$tmp/$calib" >"$tmp/inspect" 2>&1 && grep -q "fp8_pb_wo" "$tmp/inspect" && ok || bad "inspect $calib"
done
$g4 quantize --in "$tmp/bf16" --out "$tmp/nokv" 2>/dev/null && \
    python3 tools/check_modelopt_checkpoint.py "$tmp/nokv" "$tmp/bf16" >/dev/null && ok || bad "without --kv-cache"

# bad input: clear errors, exit 1, no crash
expect_error() { # dir, needle
    out=$($g4 quantize --in "$1" --out "$tmp/err_out" 2>&1); rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$2" <<<"$out"; then ok; else bad "expected '$2' (rc $rc): $out"; fi
}
expect_error "$tmp/missing_dir" "config.json: cannot read"
expect_error "$tmp/mse" "already quantized"
mkdir -p "$tmp/broken"; cp "$tmp/bf16/config.json" "$tmp/broken/"
head -c 1000 "$tmp/bf16/model.safetensors" >"$tmp/broken/model.safetensors"
expect_error "$tmp/broken" "past the end of the file"
sed 's/"hidden_size": 200/"hidden_size": 256/' "$tmp/bf16/config.json" >"$tmp/broken/config.json"
cp "$tmp/bf16/model.safetensors" "$tmp/broken/"
out=$($g4 inspect "$tmp/broken" 2>&1); [ $? -eq 1 ] && grep -q "config.json implies" <<<"$out" && ok || bad "shape mismatch: $out"
$g4 quantize --in "$tmp/bf16" 2>/dev/null; [ $? -eq 2 ] && ok || bad "usage error exit 2"
echo "quantize_checkpoint: $pass passed, $fail failed"
[ $fail -eq 0 ]
