#!/usr/bin/env bash
# One device call that makes every golden fixture (run from the repo root on
# the machine with PyTorch + transformers): results under $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, safetensors; print('torch', torch.__version__, 'transformers', transformers.__version__, 'safetensors', safetensors.__version__)"
mkdir -p $OUT/work
python3 tools/golden_quant.py $OUT/work/quant 2>&1 | tee $OUT/golden_quant.log | tail -20
python3 tools/golden_hf.py $OUT/work/hf 2>&1 | tee $OUT/golden_hf.log | tail -40
if [ -d .devdata ]; then python3 tools/check_st_loadable.py .devdata/* 2>&1 | tee $OUT/st_loadable.log | tail -5; fi
(cd $OUT/work && tar czf ../fixtures.tar.gz .) && rm -rf $OUT/work
ls -la $OUT
