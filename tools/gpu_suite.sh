#!/usr/bin/env bash
# Everything the GPU machine checks and measures for the CUDA backend, in one
# call (device time is scarce): the GPU tests, the kernel checks, the decode
# GEMV benchmark (tensor-core and CUDA-core kernels), then the 12B synthetic
# checkpoint and `g4 bench` with the per-stage profile. Each part writes its
# log to OUT; a failing part does not stop the rest.
#   tools/gpu_suite.sh BIN OUT [parts]   parts: any of tests,checks,gemv,bench,tiles,trace,sanitize
#   (default: all but sanitize; tiles: the prefill GEMM's default tiles against the best of a sweep at
#   M = 17, 32, 145, the data tools/fit_gemm_tiles.py fits pick_tiles to; trace: where BIN holds g4trace,
#   a TRACE=1 build of g4 (README), the block timeline of a decode step at 145 tokens with
#   tools/trace_report.py's summary; sanitize: racecheck of attention_check's tensor-core prefill and
#   FP8-cache decode cases, memcheck of attention_check and the GPU tests, several minutes)
# BIN holds g4, the test binaries and tests/gpu/*_check, *_bench (see tools/gpu_tests.sh).
set -uo pipefail
bin=${1:?bin dir} out=${2:?out dir} parts=${3:-tests,checks,gemv,bench,tiles,trace}
mkdir -p "$out"
has() { [[ ",$parts," == *",$1,"* ]]; }
summary=""
step() { local name=$1; shift; echo "== $name: $*"; local t0=$SECONDS; "$@" >"$out/$name.log" 2>&1; local rc=$?
         echo "   rc=$rc $((SECONDS - t0)) s; tail:"; tail -3 "$out/$name.log" | sed 's/^/   /'
         summary+="$name: rc=$rc $(grep -E 'passed.*failed' "$out/$name.log" | tail -1)"$'\n'; }
trap 'printf "\nSUMMARY\n%s" "$summary"' EXIT
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
git log -1 --format='commit %h %s' 2>/dev/null || true
if has tests; then step gpu_tests tools/gpu_tests.sh "$bin"; fi
if has checks; then
    step gemv_check "$bin/gemv_check"
    G4_GEMV=simt step gemv_check_simt "$bin/gemv_check"
    G4_WEIGHT_LAYOUT=rows step gpu_tests_rows tools/gpu_tests.sh "$bin"
    # the CUDA-core GEMV's split-K parts: the residual step's 4-part kernel
    G4_WEIGHT_LAYOUT=rows G4_GEMV=simt step gpu_tests_simt tools/gpu_tests.sh "$bin"
    step attention_check "$bin/attention_check" --quick
    G4_DECODE_ATTN=v2merge step attention_check_v2merge "$bin/attention_check" --quick
    step gemm_check "$bin/gemm_check" --quick
    step w8a8_check "$bin/w8a8_check" --quick
fi
if has gemv; then
    step gemv_bench "$bin/gemv_bench"
    G4_WEIGHT_LAYOUT=rows step gemv_bench_rows "$bin/gemv_bench"
    G4_WEIGHT_LAYOUT=rows G4_GEMV=simt step gemv_bench_simt "$bin/gemv_bench"
    cat "$out/gemv_bench.log" "$out/gemv_bench_rows.log" "$out/gemv_bench_simt.log"
fi
if has bench; then
    [ -d /tmp/s12 ] || step synth "$bin/g4" synth --preset 12b --dtype fp8 --seed 1 --out /tmp/s12
    step bench "$bin/g4" bench --model-path /tmp/s12 --prompt-len 145,1024 --gen 410 --profile
    G4_WEIGHT_LAYOUT=rows step bench_rows "$bin/g4" bench --model-path /tmp/s12 --prompt-len 145 --gen 410
    cat "$out/bench.log" "$out/bench_rows.log"
fi
if has tiles; then
    for m in 17 32 145; do
        step "sweep$m" "$bin/gemm_check" --sweep "$m"
        grep -E " default | best " "$out/sweep$m.log"
    done
fi
if has trace && [ -x "$bin/g4trace" ]; then
    [ -d /tmp/s12 ] || step synth "$bin/g4" synth --preset 12b --dtype fp8 --seed 1 --out /tmp/s12
    G4_TRACE_OUT="$out/trace145.txt" step trace "$bin/g4trace" bench --model-path /tmp/s12 --prompt-len 145 --gen 64
    step trace_report python3 tools/trace_report.py "$out/trace145.txt"
    cat "$out/trace_report.log"
    xz -f "$out/trace145.txt"
fi
if has sanitize; then
    step racecheck_attention compute-sanitizer --tool racecheck "$bin/attention_check" --prefill-tc
    step racecheck_decode compute-sanitizer --tool racecheck "$bin/attention_check" --decode-fp8
    step memcheck_attention compute-sanitizer --tool memcheck --leak-check full "$bin/attention_check" --quick
    step gpu_tests_memcheck tools/gpu_tests.sh "$bin" --memcheck
fi
