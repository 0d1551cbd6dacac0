#!/usr/bin/env python3
"""Loads every safetensors file of the given checkpoint directories with the
safetensors library (what HF transformers uses) and checks each tensor's
dtype and shape against the raw header. Runs where torch + safetensors are.
usage: check_st_loadable.py DIR [DIR...]"""
import json, os, struct, sys

from safetensors import safe_open

DT = {"F8_E4M3": "float8_e4m3fn", "F32": "float32", "BF16": "bfloat16", "I64": "int64"}
bad = 0
for d in sys.argv[1:]:
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        path = os.path.join(d, fn)
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        with safe_open(path, framework="pt") as st:
            keys = set(st.keys())
            if keys != set(header):
                bad += 1
                print("FAIL keys differ", path)
            for k in keys:
                t = st.get_tensor(k)
                if list(t.shape) != header[k]["shape"] or str(t.dtype) != "torch." + DT[header[k]["dtype"]]:
                    bad += 1
                    print("FAIL", path, k, t.dtype, t.shape, header[k])
        print(f"loaded {path}: {len(keys)} tensors")
print("st_loadable:", "OK" if bad == 0 else f"{bad} failures")
sys.exit(1 if bad else 0)
