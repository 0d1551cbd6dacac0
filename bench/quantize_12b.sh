#!/usr/bin/env bash
# Benchmark (GPU machine, 16 cores): g4 synth of the 12B-shaped BF16 checkpoint,
# then g4 quantize --calib mse on it (the checkpoint is in the page cache, as
# after a download). Usage: bench/quantize_12b.sh G4_BINARY WORKDIR
set -euo pipefail
g4=$1; work=$2
mkdir -p "$work"
echo "cores: $(nproc)  cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)  mem: $(free -g | awk '/Mem/{print $2}') GiB"
t0=$(date +%s.%N)
$g4 synth --preset 12b --dtype bf16 --seed 1 --out "$work/bf16" 2>&1 | tail -1
t1=$(date +%s.%N)
$g4 quantize --in "$work/bf16" --out "$work/fp8" --calib mse --kv-cache fp8 2>&1 | tail -1
t2=$(date +%s.%N)
$g4 inspect "$work/fp8" | tail -8
du -sh "$work/bf16" "$work/fp8"
echo "synth_12b_bf16_s $(awk "BEGIN{print $t1 - $t0}")"
echo "quantize_12b_mse_s $(awk "BEGIN{print $t2 - $t1}")"
rm -rf "$work/fp8"
t3=$(date +%s.%N)
$g4 quantize --in "$work/bf16" --out "$work/fp8" --calib max 2>&1 | tail -1
t4=$(date +%s.%N)
echo "quantize_12b_max_s $(awk "BEGIN{print $t4 - $t3}")"
