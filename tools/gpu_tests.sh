#!/usr/bin/env bash
# Runs the GPU tests on a machine with an NVIDIA GPU, from binaries built
# elsewhere (the GPU machine has no jansson/libevent headers):
#   here:  make BUILD=.devbuild STATIC_OMP=1 gpu-tests && mkdir -p .devbin &&
#          cp .devbuild/g4 .devbuild/tests/test_golden_hf .devbuild/tests/test_engine \
#             .devbuild/tests/gpu/test_gpu_vs_cpu .devbuild/tests/gpu/test_gpu_sampling .devbin/ && strip .devbin/*
#   there: tools/gpu_tests.sh .devbin   (from the repository root; add --memcheck for compute-sanitizer)
set -uo pipefail
bin=${1:-.devbin}
export G4_BIN=$bin/g4 G4_TEST_DEVICE=cuda
tests/run.sh --no-scripts "$bin/test_golden_hf" "$bin/test_engine" "$bin/test_gpu_vs_cpu" "$bin/test_gpu_sampling"
rc=$?
if [ "${2:-}" = "--memcheck" ]; then
    for t in test_golden_hf test_gpu_vs_cpu test_gpu_sampling; do
        compute-sanitizer --tool memcheck --leak-check full "$bin/$t" 2>&1 | tail -2
    done
fi
exit $rc
