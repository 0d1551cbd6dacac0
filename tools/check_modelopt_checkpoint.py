#!/usr/bin/env python3
"""Independent check of an fp8_pb_wo checkpoint against checkpoint-format.md §2,
using only json + struct (no g4 code): JSON field by field, every tensor's
name, dtype and shape, and the safetensors headers.

usage: check_modelopt_checkpoint.py OUT_DIR BF16_DIR [--kv-cache-fp8]
Prints "modelopt_json: N passed, N failed"."""
import json, os, struct, sys

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("  FAIL", what)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        size = os.fstat(f.fileno()).st_size
    meta = header.pop("__metadata__", None)
    return header, meta, n, size


def tensors(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for fn in files:
        header, meta, n, size = read_header(os.path.join(d, fn))
        check(meta == {"format": "pt"}, f"{fn}: __metadata__ is {{'format': 'pt'}}")
        check((8 + n) % 8 == 0, f"{fn}: data starts 8-byte aligned")
        end = 0
        for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
            b, e = t["data_offsets"]
            check(b == end, f"{fn}: {name} starts where the previous tensor ends")
            end = e
            out[name] = t
        check(8 + n + end == size, f"{fn}: data buffer ends at the end of the file")
    return out


def main():
    out_dir, bf16_dir = sys.argv[1], sys.argv[2]
    kv = "--kv-cache-fp8" in sys.argv
    cfg_in = json.load(open(os.path.join(bf16_dir, "config.json")))
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    hfq = json.load(open(os.path.join(out_dir, "hf_quant_config.json")))
    has_mm = "vision_config" in cfg_in or "audio_config" in cfg_in
    excl = ["lm_head", "model.embed_audio*", "model.embed_vision*"] if has_mm else ["lm_head"]
    producer = {"name": "modelopt", "version": "0.45.0.dev158+gf9423c0d3"}

    # config.json: the input unchanged, plus quantization_config exactly as §2 shows.
    qc = cfg.pop("quantization_config", None)
    check(cfg == cfg_in, "config.json keeps every input field unchanged")
    want_qc = {"ignore": excl, "quant_algo": "fp8_pb_wo", "producer": producer, "quant_method": "modelopt"}
    if kv:
        want_qc["kv_cache_scheme"] = {"dynamic": False, "num_bits": 8, "type": "float"}
    check(qc == want_qc, f"quantization_config == {want_qc} (got {qc})")
    check(qc is not None and "config_groups" not in qc, "no config_groups for fp8_pb_wo")
    check(qc is not None and list(qc)[:2] == ["ignore", "quant_algo"], "quantization_config key order as ModelOpt")
    want_hf = {"producer": producer, "quantization": {"quant_algo": "fp8_pb_wo", "exclude_modules": excl}}
    if kv:
        want_hf["quantization"]["kv_cache_quant_algo"] = "FP8"
    check(hfq == want_hf, f"hf_quant_config.json == {want_hf} (got {hfq})")

    src, dst = tensors(bf16_dir), tensors(out_dir)
    linear = (".q_proj.weight", ".k_proj.weight", ".v_proj.weight", ".o_proj.weight",
              ".gate_proj.weight", ".up_proj.weight", ".down_proj.weight")
    renamed = 0
    for name, t in src.items():
        if name.startswith("model.language_model.layers.") and name.endswith(linear):
            q = dst.get(name)
            s = dst.get(name[: -len("weight")] + "weight_scale")
            r, c = t["shape"]
            check(q is not None and q["dtype"] == "F8_E4M3" and q["shape"] == [r, c], f"{name}: F8_E4M3 {r}x{c}")
            want = [-(-r // 128), 1, -(-c // 128), 1]
            check(s is not None and s["dtype"] == "F32" and s["shape"] == want, f"{name}_scale: F32 {want}")
            continue
        out_name = name
        if name.startswith("model.vision_embedder."):
            out_name = "model.embed_vision." + name[len("model.vision_embedder."):]
        elif name == "model.embed_vision.embedding_projection.weight":
            out_name = "model.embed_vision.multimodal_embedder.embedding_projection.weight"
        renamed += out_name != name
        d = dst.get(out_name)
        check(d is not None and d["dtype"] == t["dtype"] == "BF16" and d["shape"] == t["shape"],
              f"{name} kept in BF16 as {out_name}")
    check(not has_mm or renamed == 10, f"10 multimodal tensors take the transformers names ({renamed})")
    extra = [n for n in dst if n.endswith(("input_scale", "weight_scale_2", "pre_quant_scale", "_amax"))]
    check(not extra, f"no input_scale / weight_scale_2 / amax tensors ({extra})")
    n_lin = sum(1 for n in src if n.endswith(linear))
    check(len(dst) == len(src) + n_lin, f"{len(src)} tensors + one scale per linear ({len(dst)})")
    print(f"modelopt_json: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
