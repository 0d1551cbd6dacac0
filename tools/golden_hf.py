#!/usr/bin/env python3
"""Golden logits from HF transformers for small random `gemma4_unified` models.

Usage (from the repo root, on a machine with PyTorch + transformers >= 5.17 that has
`gemma4_unified`, safetensors; no network needed; runs on CPU in a minute or two):

    python3 tools/golden_hf.py tests/fixtures/hf

For every model NAME in MODELS it writes

  OUTDIR/NAME/          a BF16 checkpoint written by `save_pretrained`
      config.json, generation_config.json, model.safetensors
      config.global_spelling.json  same config, but with the converter spelling
                                   (`global_head_dim` / `num_global_key_value_heads`
                                   instead of `per_layer_config`) for parser tests
      golden.safetensors
  OUTDIR/NAME_fp8/      the same weights as a ModelOpt `fp8_pb_wo` checkpoint
      config.json (+ quantization_config), hf_quant_config.json,
      generation_config.json, model.safetensors, golden.safetensors
  OUTDIR/README.txt, OUTDIR/manifest.json

golden.safetensors:
  prompt_ids     I64 [T]
  prefill_logits F32 [T, V]  logits (after the final softcap) at every prompt position
  decode_ids     I64 [S]     greedy tokens: decode_ids[0] = argmax(prefill_logits[T-1]),
                             decode_ids[i] = argmax(decode_logits[i])
  decode_logits  F32 [S, V]  decode_logits[0] = prefill_logits[T-1]; decode_logits[i]
                             (i >= 1) = logits of the KV-cached step that fed
                             decode_ids[i-1] at position T+i-1.  decode_ids[S-1] is
                             never fed.  argmax ties -> lowest id (torch.argmax);
                             nothing is suppressed and EOS does not stop decoding.

Numerics: every weight is drawn in fp32 and rounded to bf16 (so it is exactly
representable in the BF16 checkpoint); HF then runs in float32 on CPU with the
"eager" attention implementation.  The embedding scale is rounded to bf16
(sqrt(hidden) -> bf16), as HF does for a bf16 checkpoint.  The fp8 goldens are
computed by the same HF model with every quantized linear replaced by its
dequantized value float(q) * scale (fp32); embeddings/norms/layer_scalar stay the
bf16 values.  Quantization = max calibration of tools/golden_quant.py.

Self-checks (the script fails if one fails; set G4_GOLDEN_LAX=1 to only warn):
  * the KV-cached decode logits equal a cache-free forward over prompt+decode_ids;
  * the saved BF16 safetensors read back equal to the weights that were run;
  * geometry (head dims, kv heads, K==V) of every layer is as specified.
Report only (never fails): an independent re-implementation of docs/model.md §2
(plain torch, same weights) is compared with HF; a mismatch means model.md (or that
re-implementation) disagrees with transformers.
"""

import copy
import json
import math
import os
import re
import shutil
import sys

import torch

LAX = os.environ.get("G4_GOLDEN_LAX", "") not in ("", "0")

S_ATT = "sliding_attention"
F_ATT = "full_attention"

# ---------------------------------------------------------------------------------
# The models.  `text` goes verbatim into Gemma4UnifiedTextConfig (via the composite
# Gemma4UnifiedConfig(text_config=dict)); the other keys drive the script.
# ---------------------------------------------------------------------------------


def _text(vocab, hidden, inter, nq, nkv, hd, ghd, gkv, layer_types, window,
          partial=0.25, theta_s=10000.0, theta_f=1000000.0):
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": len(layer_types),
        "num_attention_heads": nq,
        "num_key_value_heads": nkv,
        "head_dim": hd,
        "global_head_dim": ghd,
        "num_global_key_value_heads": gkv,
        "attention_k_eq_v": True,
        "num_kv_shared_layers": 0,
        "use_double_wide_mlp": False,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-06,
        "sliding_window": window,
        "layer_types": list(layer_types),
        "rope_parameters": {
            S_ATT: {"rope_type": "default", "rope_theta": float(theta_s)},
            F_ATT: {"rope_type": "proportional", "partial_rotary_factor": float(partial),
                    "rope_theta": float(theta_f)},
        },
        "final_logit_softcapping": 30.0,
        "use_bidirectional_attention": "vision",
        "max_position_embeddings": 262144,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
        "tie_word_embeddings": True,
        "use_cache": True,
        "initializer_range": 0.02,
    }


MODELS = [
    {
        "name": "a_h96",
        "seed": 1001,
        "covers": "hidden 96 (< 128, one partial block); sliding GQA 4q:2kv hd16; full 4q:1kv "
                  "hd32 K==V, proportional RoPE 25% (4 of 16 angles); window 8, prompt 40 (> window); "
                  "intermediate 144 (partial 2nd block)",
        "text": _text(384, 96, 144, 4, 2, 16, 32, 1, [S_ATT, S_ATT, F_ATT, S_ATT, F_ATT], 8),
        "vision": None, "audio": None,
        "T": 40, "S": 32,
    },
    {
        "name": "b_h128",
        "seed": 1002,
        "covers": "hidden 128 (multiple of 128); sliding GQA 4q:2kv hd32; full 4q:1kv hd64 K==V, "
                  "proportional RoPE 25% (8 of 32 angles); window 16, prompt 44 (> window)",
        "text": _text(384, 128, 128, 4, 2, 32, 64, 1, [S_ATT, F_ATT, S_ATT, F_ATT], 16),
        "vision": None, "audio": None,
        "T": 44, "S": 32,
    },
    {
        "name": "c_h200",
        "seed": 1003,
        "covers": "hidden 200 (128 + partial 72 block); sliding GQA 2q:1kv hd16; full 2q:1kv hd32 "
                  "K==V, proportional RoPE 25%; window 12, prompt 37 (> window); intermediate 64",
        "text": _text(384, 200, 64, 2, 1, 16, 32, 1, [S_ATT, F_ATT, S_ATT, F_ATT], 12),
        "vision": None, "audio": None,
        "T": 37, "S": 32,
    },
    {
        "name": "d_h64_mm",
        "seed": 1004,
        "covers": "12B-like 5:1 layer pattern (8 layers, full at 5 and 7); sliding GQA 8q:4kv hd16; "
                  "full 8q:1kv (8:1) hd32 K==V, proportional RoPE 50% (8 of 16 angles); window 8 with a "
                  "SHORT prompt (6 < window) so the window fills during decode (40 steps); "
                  "tiny vision/audio embedders present (their tensors must be ignored by a text-only "
                  "loader; excluded from fp8)",
        "text": _text(384, 64, 96, 8, 4, 16, 32, 1,
                      [S_ATT, S_ATT, S_ATT, S_ATT, S_ATT, F_ATT, S_ATT, F_ATT], 8, partial=0.5),
        "vision": {"patch_size": 2, "pooling_kernel_size": 3, "mm_embed_dim": 64,
                   "mm_posemb_size": 8, "output_proj_dims": 64, "rms_norm_eps": 1e-06},
        "audio": {"audio_embed_dim": 8, "rms_norm_eps": 1e-06},
        "T": 6, "S": 40,
    },
    {
        "name": "e_h128_16h",
        "seed": 1005,
        "covers": "the 12B's head ratios: 16 query heads, sliding GQA 16q:8kv (2:1) hd8, full 16q:1kv (16:1) "
                  "hd16 K==V, proportional RoPE 25% (2 of 8 angles); window 8, prompt 30 (> window)",
        "text": _text(384, 128, 128, 16, 8, 8, 16, 1, [S_ATT, S_ATT, F_ATT, S_ATT, F_ATT], 8),
        "vision": None, "audio": None,
        "T": 30, "S": 32,
    },
]

GENERATION = {"bos_token_id": 2, "pad_token_id": 0, "eos_token_id": [1, 106, 50],
              "do_sample": True, "temperature": 1.0, "top_k": 64, "top_p": 0.95}

MODELOPT_PRODUCER = {"name": "modelopt", "version": "0.45.0.dev158+gf9423c0d3"}

LINEAR_RE = re.compile(
    r"^model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$")
LM_PREFIX = "model.language_model."


def fail(msg):
    raise RuntimeError(msg)


def check(cond, msg):
    if cond:
        return
    if LAX:
        print(f"!!! WARNING (lax mode): {msg}")
    else:
        fail(msg + "  (set G4_GOLDEN_LAX=1 to continue anyway)")


def bf16_round(x):
    return x.to(torch.bfloat16).to(torch.float32)


# ---------------------------------------------------------------------------------
# transformers plumbing
# ---------------------------------------------------------------------------------

def import_hf():
    try:
        from transformers import (Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration,
                                  GenerationConfig)
    except ImportError:
        from transformers import GenerationConfig
        from transformers.models.gemma4_unified import (Gemma4UnifiedConfig,
                                                        Gemma4UnifiedForConditionalGeneration)
    return Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration, GenerationConfig


def build_config(spec, Gemma4UnifiedConfig):
    kw = {"text_config": copy.deepcopy(spec["text"]), "vision_config": copy.deepcopy(spec["vision"]),
          "audio_config": copy.deepcopy(spec["audio"]), "tie_word_embeddings": True,
          "initializer_range": 0.02}
    return Gemma4UnifiedConfig(**kw)


def set_eager(model):
    try:
        model.set_attn_implementation("eager")
    except Exception as e:  # noqa: BLE001
        print(f"  note: set_attn_implementation('eager') failed ({type(e).__name__}: {e}); "
              "trying config attribute")
        try:
            model.config.get_text_config()._attn_implementation = "eager"
        except Exception as e2:  # noqa: BLE001
            print(f"  note: could not force eager ({e2}); keeping the default")
    impl = getattr(model.model.language_model.config, "_attn_implementation", "?")
    print(f"  attention implementation in use: {impl}")
    return impl


def lm_of(model):
    return model.model.language_model


def init_weights(model, spec):
    """Deterministic fp32 draws rounded to bf16, independent of HF's own init."""
    H = spec["text"]["hidden_size"]
    g = torch.Generator().manual_seed(spec["seed"])

    def normal(shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float32)

    counts = {}
    with torch.no_grad():
        params = sorted(model.named_parameters(), key=lambda kv: kv[0])
        for name, p in params:
            shape = tuple(p.shape)
            if name.endswith("embed_tokens.weight"):
                kind, v = "embed", normal(shape, 1.0 / math.sqrt(H))
            elif name == LM_PREFIX + "norm.weight":
                kind, v = "final_norm", uniform(shape, 3.0, 9.0)
            elif name.startswith(LM_PREFIX) and name.endswith(
                    ("post_attention_layernorm.weight", "post_feedforward_layernorm.weight")):
                # Small post-norms keep the residual stream dominant, as in a
                # trained model: with U(1.5, 3) the random net was chaotic (BF16
                # vs F32 KV alone moved logits by 7%), so no FP8-KV greedy run
                # could agree with a BF16-KV one for 32 steps.
                kind, v = "post_norm", uniform(shape, 0.15, 0.3)
            elif name.startswith(LM_PREFIX) and name.endswith(("q_norm.weight", "k_norm.weight")):
                # attention logits of a few units, not tens (scale is 1.0)
                kind, v = "qk_norm", uniform(shape, 0.2, 0.6)
            elif name.startswith(LM_PREFIX) and name.endswith(
                    ("input_layernorm.weight", "pre_feedforward_layernorm.weight")):
                kind, v = "norm", uniform(shape, 0.5, 1.5)
            elif len(shape) == 2:
                kind, v = "linear", normal(shape, 1.0 / math.sqrt(shape[1]))
            elif name.endswith(".bias"):
                kind, v = "bias", normal(shape, 0.1)
            elif len(shape) == 1:
                kind, v = "other_1d", uniform(shape, 0.5, 1.5)
            else:
                kind, v = "other", normal(shape, 0.1)
            p.copy_(bf16_round(v))
            counts[kind] = counts.get(kind, 0) + 1
        n_ls = 0
        for layer in lm_of(model).layers:
            ls = layer.layer_scalar
            ls.copy_(bf16_round(uniform(tuple(ls.shape), 0.5, 1.5)))
            n_ls += 1
        counts["layer_scalar"] = n_ls
    return counts


def fix_embed_scale(model, H):
    """HF multiplies by embed_scale.to(weight.dtype): bf16(sqrt(H)) for a bf16 model.
    We run fp32, so store the bf16-rounded value to get the bf16-checkpoint math."""
    v = float(torch.tensor(math.sqrt(H), dtype=torch.float32).to(torch.bfloat16).float())
    emb = lm_of(model).embed_tokens
    with torch.no_grad():
        if isinstance(getattr(emb, "embed_scale", None), torch.Tensor):
            emb.embed_scale.fill_(v)
        else:
            emb.embed_scale = v
    if hasattr(emb, "scalar_embed_scale"):
        emb.scalar_embed_scale = v
    with torch.no_grad():
        ids = torch.tensor([[0, 3, 5]], dtype=torch.long)
        got = emb(ids)
        want = emb.weight[ids] * v
    check(torch.equal(got, want), f"embedding scale not applied as bf16(sqrt({H}))={v}")
    return v


def ensure_tied(model):
    emb = lm_of(model).embed_tokens.weight
    head = model.get_output_embeddings().weight
    if head.data_ptr() != emb.data_ptr():
        model.tie_weights()
        head = model.get_output_embeddings().weight
    if head.data_ptr() != emb.data_ptr():
        fail("lm_head.weight is not tied to model.language_model.embed_tokens.weight")


def check_geometry(model, spec):
    t = spec["text"]
    lm = lm_of(model)
    if len(lm.layers) != t["num_hidden_layers"]:
        fail(f"{len(lm.layers)} layers built, expected {t['num_hidden_layers']}")
    check(lm.config.final_logit_softcapping == 30.0, "final_logit_softcapping not 30")
    check(list(lm.config.layer_types) == t["layer_types"], f"layer_types {lm.config.layer_types}")
    for i, layer in enumerate(lm.layers):
        full = t["layer_types"][i] == F_ATT
        hd = t["global_head_dim"] if full else t["head_dim"]
        nkv = t["num_global_key_value_heads"] if full else t["num_key_value_heads"]
        a = layer.self_attn
        got = (getattr(a, "head_dim", None), a.q_proj.out_features, a.q_proj.in_features,
               a.k_proj.out_features, getattr(a, "v_proj", None) is None, a.o_proj.in_features,
               a.o_proj.out_features, float(getattr(a, "scaling", 1.0)),
               layer.mlp.gate_proj.out_features, layer.mlp.down_proj.in_features)
        want = (hd, t["num_attention_heads"] * hd, t["hidden_size"], nkv * hd, full,
                t["num_attention_heads"] * hd, t["hidden_size"], 1.0,
                t["intermediate_size"], t["intermediate_size"])
        check(got == want, f"layer {i} ({t['layer_types'][i]}) geometry (head_dim, q out, q in, "
              f"k out, v_proj is None, o in, o out, scaling, inter, down in) = {got} != expected {want}")
        if getattr(a, "sliding_window", None) not in ((t["sliding_window"] if not full else None),):
            print(f"  note: layer {i} self_attn.sliding_window = {getattr(a, 'sliding_window', None)}")
        if tuple(layer.layer_scalar.shape) != (1,):
            fail(f"layer {i} layer_scalar shape {tuple(layer.layer_scalar.shape)}")


# ---------------------------------------------------------------------------------
# Independent reference (docs/model.md §2), plain torch, fp32
# ---------------------------------------------------------------------------------

def _rms(x, w, eps):
    y = x * torch.pow(x.pow(2).mean(-1, keepdim=True) + eps, -0.5)
    return y * w if w is not None else y


def _rot_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def ref_inv_freq(spec, full):
    t = spec["text"]
    if full:
        hd = t["global_head_dim"]
        rp = t["rope_parameters"][F_ATT]
        ra = int(rp["partial_rotary_factor"] * hd // 2)
        inv = torch.zeros(hd // 2, dtype=torch.float32)
        inv[:ra] = 1.0 / (rp["rope_theta"] ** (torch.arange(0, 2 * ra, 2, dtype=torch.float32) / hd))
    else:
        hd = t["head_dim"]
        rp = t["rope_parameters"][S_ATT]
        inv = 1.0 / (rp["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    return inv


def ref_forward(spec, sd, ids, embed_scale):
    t = spec["text"]
    eps = t["rms_norm_eps"]
    nq = t["num_attention_heads"]
    W = t["sliding_window"]
    T = len(ids)
    E = sd[LM_PREFIX + "embed_tokens.weight"].float()
    x = E[torch.tensor(ids, dtype=torch.long)] * embed_scale
    pos = torch.arange(T, dtype=torch.float32)
    ti = torch.arange(T)[:, None]
    si = torch.arange(T)[None, :]
    for l, typ in enumerate(t["layer_types"]):
        p = f"{LM_PREFIX}layers.{l}."
        w = lambda n: sd[p + n].float()  # noqa: E731
        full = typ == F_ATT
        hd = t["global_head_dim"] if full else t["head_dim"]
        nkv = t["num_global_key_value_heads"] if full else t["num_key_value_heads"]
        ang = pos[:, None] * ref_inv_freq(spec, full)[None, :]
        cos = torch.cat((ang.cos(), ang.cos()), -1)[:, None, :]
        sin = torch.cat((ang.sin(), ang.sin()), -1)[:, None, :]
        h = _rms(x, w("input_layernorm.weight"), eps)
        q = (h @ w("self_attn.q_proj.weight").T).view(T, nq, hd)
        q = _rms(q, w("self_attn.q_norm.weight"), eps)
        q = q * cos + _rot_half(q) * sin
        kr = (h @ w("self_attn.k_proj.weight").T).view(T, nkv, hd)
        vr = kr if full else (h @ w("self_attn.v_proj.weight").T).view(T, nkv, hd)
        k = _rms(kr, w("self_attn.k_norm.weight"), eps)
        k = k * cos + _rot_half(k) * sin
        v = _rms(vr, None, eps)
        g = nq // nkv
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        s = torch.einsum("thd,shd->hts", q, k)  # scale 1.0
        allowed = si <= ti
        if not full:
            allowed = allowed & (si > ti - W)
        s = s.masked_fill(~allowed[None], float("-inf"))
        pr = torch.softmax(s, dim=-1)
        o = torch.einsum("hts,shd->thd", pr, v).reshape(T, nq * hd)
        a = o @ w("self_attn.o_proj.weight").T
        x1 = x + _rms(a, w("post_attention_layernorm.weight"), eps)
        m = _rms(x1, w("pre_feedforward_layernorm.weight"), eps)
        gt = m @ w("mlp.gate_proj.weight").T
        gelu = 0.5 * gt * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (gt + 0.044715 * gt ** 3)))
        y = (gelu * (m @ w("mlp.up_proj.weight").T)) @ w("mlp.down_proj.weight").T
        x = (x1 + _rms(y, w("post_feedforward_layernorm.weight"), eps)) * w("layer_scalar")
    hf = _rms(x, sd[LM_PREFIX + "norm.weight"].float(), eps)
    logits = hf @ E.T
    cap = t["final_logit_softcapping"]
    return cap * torch.tanh(logits / cap)


# ---------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------

def run_golden(model, prompt, S):
    T = len(prompt)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt], dtype=torch.long), use_cache=True)
        prefill = out.logits[0].to(torch.float32).clone()
        if tuple(prefill.shape[:1]) != (T,):
            fail(f"prefill logits shape {tuple(prefill.shape)}")
        pkv = out.past_key_values
        if pkv is None:
            fail("no past_key_values returned with use_cache=True")
        dec_ids, dec_logits = [], []
        cur = prefill[-1]
        for i in range(S):
            tok = int(torch.argmax(cur))
            dec_ids.append(tok)
            dec_logits.append(cur.clone())
            if i == S - 1:
                break
            step = model(input_ids=torch.tensor([[tok]], dtype=torch.long), past_key_values=pkv,
                         use_cache=True, position_ids=torch.tensor([[T + i]], dtype=torch.long))
            pkv = step.past_key_values
            cur = step.logits[0, -1].to(torch.float32)
        # cache-free recompute over the whole sequence
        full_ids = prompt + dec_ids[:-1]
        nocache = model(input_ids=torch.tensor([full_ids], dtype=torch.long), use_cache=False)
        nc = nocache.logits[0].to(torch.float32)
    dec_logits = torch.stack(dec_logits, 0)
    d_pre = float((nc[:T] - prefill).abs().max())
    d_dec = float((nc[T - 1:] - dec_logits).abs().max())
    top2 = torch.topk(torch.cat([prefill, dec_logits[1:]], 0), 2, dim=-1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    return {"prefill": prefill, "dec_ids": dec_ids, "dec_logits": dec_logits, "nocache": nc,
            "d_prefill_nocache": d_pre, "d_decode_nocache": d_dec, "min_top2_margin": margin}


def save_golden(path, prompt, g, extra_meta):
    from safetensors.torch import save_file
    tensors = {
        "prompt_ids": torch.tensor(prompt, dtype=torch.int64),
        "prefill_logits": g["prefill"].contiguous(),
        "decode_ids": torch.tensor(g["dec_ids"], dtype=torch.int64),
        "decode_logits": g["dec_logits"].contiguous(),
    }
    meta = {"format": "pt",
            "decode_convention": "decode_logits[0]=prefill_logits[T-1]; decode_logits[i]=logits after "
                                 "feeding decode_ids[i-1] at position T+i-1; decode_ids[i]=argmax("
                                 "decode_logits[i]) (lowest id on ties); no suppression, no EOS stop"}
    meta.update({k: str(v) for k, v in extra_meta.items()})
    save_file(tensors, path, metadata=meta)


def compare_reference(spec, sd, g, prompt, embed_scale, tag):
    full_ids = prompt + g["dec_ids"][:-1]
    with torch.no_grad():
        ref = ref_forward(spec, sd, full_ids, embed_scale)
    d = float((ref - g["nocache"]).abs().max())
    same_argmax = bool(torch.equal(ref.argmax(-1), g["nocache"].argmax(-1)))
    status = "MATCH" if d < 1e-3 else "DISCREPANCY"
    print(f"  [{tag}] model.md reference vs HF: max|diff| = {d:.3e}, argmax equal: {same_argmax} "
          f"-> {status}")
    if status != "MATCH":
        print(f"!!! [{tag}] docs/model.md re-implementation DISAGREES with transformers "
              f"(max|diff| {d:.3e}); the goldens are HF's.  Investigate model.md.")
    return d


def compare_rope_buffers(model, spec):
    rot = getattr(lm_of(model), "rotary_emb", None)
    out = {}
    for typ, full in ((S_ATT, False), (F_ATT, True)):
        buf = getattr(rot, f"{typ}_inv_freq", None) if rot is not None else None
        if buf is None:
            print(f"  note: no rotary buffer {typ}_inv_freq to compare")
            continue
        ref = ref_inv_freq(spec, full)
        if tuple(buf.shape) != tuple(ref.shape):
            print(f"!!! RoPE {typ}: HF inv_freq shape {tuple(buf.shape)} vs model.md {tuple(ref.shape)}")
            out[typ] = float("inf")
            continue
        d = float((buf.float().cpu() - ref).abs().max())
        out[typ] = d
        print(f"  RoPE {typ}: HF inv_freq vs model.md formula max|diff| = {d:.3e}"
              f"{'' if d == 0 else '  <-- differs'}")
    return out


# ---------------------------------------------------------------------------------
# Checkpoint writers
# ---------------------------------------------------------------------------------

def save_bf16_checkpoint(model, outdir, GenerationConfig):
    from safetensors import safe_open
    m2 = copy.deepcopy(model)
    m2.to(torch.bfloat16)
    m2.generation_config = GenerationConfig(**GENERATION)
    m2.save_pretrained(outdir)
    del m2
    if not os.path.exists(os.path.join(outdir, "generation_config.json")):
        GenerationConfig(**GENERATION).save_pretrained(outdir)
    st = os.path.join(outdir, "model.safetensors")
    if not os.path.exists(st):
        fail(f"save_pretrained did not write a single {st} (files: {sorted(os.listdir(outdir))})")
    names = {}
    with safe_open(st, framework="pt") as f:
        for k in f.keys():
            names[k] = f.get_tensor(k)
    return names


def write_fp8_checkpoint(sd, bf16_dir, outdir, has_mm, quantize_fp8_pb, dequantize_fp8_pb):
    from safetensors.torch import save_file
    os.makedirs(outdir, exist_ok=True)
    tensors, deq = {}, {}
    n_lin = 0
    for k in sorted(sd):
        if k == "lm_head.weight":
            continue
        v = sd[k]
        if LINEAR_RE.match(k):
            wbf = v.to(torch.bfloat16)
            q, s, _ = quantize_fp8_pb(wbf, "max")
            tensors[k] = q
            tensors[k[: -len("weight")] + "weight_scale"] = s
            deq[k] = dequantize_fp8_pb(q, s)
            n_lin += 1
        else:
            tensors[k] = v.to(torch.bfloat16).contiguous()
    if n_lin == 0:
        fail("no linear weights matched for quantization")
    save_file(tensors, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    exclude = ["lm_head"] + (["model.embed_audio*", "model.embed_vision*"] if has_mm else [])
    with open(os.path.join(bf16_dir, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {
        "ignore": exclude,
        "quant_algo": "fp8_pb_wo",
        "kv_cache_scheme": {"dynamic": False, "num_bits": 8, "type": "float"},
        "producer": MODELOPT_PRODUCER,
        "quant_method": "modelopt",
    }
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    hq = {"producer": MODELOPT_PRODUCER,
          "quantization": {"quant_algo": "fp8_pb_wo", "kv_cache_quant_algo": "FP8",
                           "exclude_modules": exclude}}
    with open(os.path.join(outdir, "hf_quant_config.json"), "w") as f:
        json.dump(hq, f, indent=4)
        f.write("\n")
    shutil.copyfile(os.path.join(bf16_dir, "generation_config.json"),
                    os.path.join(outdir, "generation_config.json"))
    return tensors, deq


def write_global_spelling(spec, bf16_dir):
    with open(os.path.join(bf16_dir, "config.json")) as f:
        cfg = json.load(f)
    tc = cfg.get("text_config", {})
    tc.pop("per_layer_config", None)
    tc["global_head_dim"] = spec["text"]["global_head_dim"]
    tc["num_global_key_value_heads"] = spec["text"]["num_global_key_value_heads"]
    tc["head_dim"] = spec["text"]["head_dim"]
    tc["num_key_value_heads"] = spec["text"]["num_key_value_heads"]
    cfg["text_config"] = tc
    with open(os.path.join(bf16_dir, "config.global_spelling.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def describe(tensors):
    rows = []
    for k in sorted(tensors):
        v = tensors[k]
        rows.append(f"    {k:72s} {str(v.dtype).replace('torch.', ''):14s} {list(v.shape)}")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------

def do_model(spec, outroot, hf, quant):
    Gemma4UnifiedConfig, Cls, GenerationConfig = hf
    quantize_fp8_pb, dequantize_fp8_pb = quant
    name = spec["name"]
    t = spec["text"]
    print(f"=== {name}: {spec['covers']}")
    torch.manual_seed(spec["seed"])
    cfg = build_config(spec, Gemma4UnifiedConfig)
    model = Cls(cfg)
    model.eval()
    impl = set_eager(model)
    ensure_tied(model)
    counts = init_weights(model, spec)
    print(f"  parameters initialised: {counts}")
    ensure_tied(model)
    embed_scale = fix_embed_scale(model, t["hidden_size"])
    check_geometry(model, spec)
    rope_d = compare_rope_buffers(model, spec)

    g = torch.Generator().manual_seed(spec["seed"] + 77)
    prompt = [2] + torch.randint(3, t["vocab_size"], (spec["T"] - 1,), generator=g).tolist()

    sd = {k: v.detach().to(torch.float32).clone() for k, v in model.state_dict().items()}

    # ---- BF16 model goldens ------------------------------------------------------
    gold = run_golden(model, prompt, spec["S"])
    print(f"  bf16: cache vs no-cache max|diff| prefill {gold['d_prefill_nocache']:.2e} decode "
          f"{gold['d_decode_nocache']:.2e}; min top1-top2 margin {gold['min_top2_margin']:.3e}; "
          f"{len(set(gold['dec_ids']))} distinct decode ids")
    check(gold["d_prefill_nocache"] < 1e-3 and gold["d_decode_nocache"] < 1e-3,
          f"{name}: KV-cached decode disagrees with the cache-free forward")
    ref_d = compare_reference(spec, sd, gold, prompt, embed_scale, f"{name} bf16")

    bdir = os.path.join(outroot, name)
    os.makedirs(bdir, exist_ok=True)
    saved = save_bf16_checkpoint(model, bdir, GenerationConfig)
    # read-back check: every text tensor equals what was run, bf16 dtype everywhere
    bad = [k for k, v in saved.items() if v.dtype != torch.bfloat16]
    check(not bad, f"{name}: non-BF16 tensors in model.safetensors: {bad}")
    for k, v in sd.items():
        if not k.startswith(LM_PREFIX):
            continue
        if k not in saved:
            check(False, f"{name}: {k} missing from model.safetensors")
            continue
        check(torch.equal(saved[k].to(torch.float32), v), f"{name}: {k} differs after save")
    if "lm_head.weight" in saved:
        print("  note: save_pretrained wrote lm_head.weight (tied head not removed)")
    not_lm = sorted(k for k in saved if not k.startswith(LM_PREFIX))
    if not_lm:
        print(f"  non-text tensors in the BF16 checkpoint: {not_lm}")
    write_global_spelling(spec, bdir)
    save_golden(os.path.join(bdir, "golden.safetensors"), prompt, gold,
                {"model": name, "weights": "bf16", "attn_implementation": impl,
                 "embed_scale": embed_scale})

    # ---- FP8 (fp8_pb_wo, max calibration) --------------------------------------------
    fdir = os.path.join(outroot, name + "_fp8")
    ftensors, deq = write_fp8_checkpoint(sd, bdir, fdir, spec["vision"] is not None,
                                         quantize_fp8_pb, dequantize_fp8_pb)
    text_bf16 = {k for k in saved if k.startswith(LM_PREFIX)}
    text_fp8 = {k for k in ftensors if k.startswith(LM_PREFIX) and not k.endswith("weight_scale")}
    if text_bf16 != text_fp8:
        print(f"!!! {name}: text tensor names differ between BF16 and FP8 checkpoints: "
              f"{sorted(text_bf16 ^ text_fp8)}")
    with torch.no_grad():
        for k, v in deq.items():
            model.get_parameter(k).copy_(v)
    sd_q = dict(sd)
    sd_q.update(deq)
    qerr = max(float((deq[k] - sd[k]).abs().max() / sd[k].abs().max()) for k in deq)
    gold8 = run_golden(model, prompt, spec["S"])
    print(f"  fp8: max relative weight error {qerr:.3e}; cache vs no-cache prefill "
          f"{gold8['d_prefill_nocache']:.2e} decode {gold8['d_decode_nocache']:.2e}; min margin "
          f"{gold8['min_top2_margin']:.3e}; logits vs bf16 max|diff| "
          f"{float((gold8['prefill'] - gold['prefill']).abs().max()):.3e}")
    check(gold8["d_prefill_nocache"] < 1e-3 and gold8["d_decode_nocache"] < 1e-3,
          f"{name}_fp8: KV-cached decode disagrees with the cache-free forward")
    ref_d8 = compare_reference(spec, sd_q, gold8, prompt, embed_scale, f"{name} fp8")
    save_golden(os.path.join(fdir, "golden.safetensors"), prompt, gold8,
                {"model": name + "_fp8", "weights": "fp8_pb_wo max-calibrated, dequantized fp32",
                 "attn_implementation": impl, "embed_scale": embed_scale})

    return {
        "name": name, "dir": name, "fp8_dir": name + "_fp8", "seed": spec["seed"],
        "covers": spec["covers"], "T": spec["T"], "S": spec["S"], "embed_scale": embed_scale,
        "attn_implementation": impl,
        "text_config_args": spec["text"], "vision_config_args": spec["vision"],
        "audio_config_args": spec["audio"],
        "checks": {"ref_vs_hf_bf16": ref_d, "ref_vs_hf_fp8": ref_d8,
                   "cache_vs_nocache_bf16": max(gold["d_prefill_nocache"], gold["d_decode_nocache"]),
                   "cache_vs_nocache_fp8": max(gold8["d_prefill_nocache"], gold8["d_decode_nocache"]),
                   "rope_inv_freq_vs_doc": rope_d,
                   "min_top2_margin_bf16": gold["min_top2_margin"],
                   "min_top2_margin_fp8": gold8["min_top2_margin"]},
        "bf16_tensors": describe(saved), "fp8_tensors": describe(ftensors),
        "decode_ids_bf16": gold["dec_ids"], "decode_ids_fp8": gold8["dec_ids"],
    }


README_HEAD = """Golden fixtures for g4, written by tools/golden_hf.py (HF transformers {tfv}, torch {tv}).
Do not edit by hand; re-run the script.

Per model NAME:
  NAME/       BF16 checkpoint as written by save_pretrained (config.json with per_layer_config,
              generation_config.json, model.safetensors) + config.global_spelling.json (the same
              config in the converter spelling global_head_dim/num_global_key_value_heads) +
              golden.safetensors
  NAME_fp8/   ModelOpt fp8_pb_wo checkpoint of the same weights (max calibration, see
              tools/golden_quant.py): F8_E4M3 weight + F32 [ceil(out/128),1,ceil(in/128),1]
              weight_scale for every q/k/v/o/gate/up/down; everything else BF16;
              config.json with quantization_config; hf_quant_config.json; golden.safetensors
              computed by HF on the dequantized weights float(q)*scale (fp32).
              NOTE: config.json declares kv_cache_scheme FP8 like the real checkpoint (no
              k_scale/v_scale tensors -> scale 1.0), but the goldens use an UNQUANTIZED (fp32)
              KV cache: compare with the KV cache unquantized, or with a looser tolerance.

golden.safetensors: prompt_ids I64[T], prefill_logits F32[T,V] (after softcap 30),
  decode_ids I64[S], decode_logits F32[S,V].
  decode_logits[0] = prefill_logits[T-1]; decode_logits[i] (i>=1) = logits of the KV-cached
  step that fed decode_ids[i-1] at position T+i-1; decode_ids[i] = argmax(decode_logits[i])
  (lowest id on ties).  decode_ids[S-1] is never fed.  Greedy, no token suppression (the real
  model suppresses 258882/258883, outside this vocab), EOS does not stop decoding.
  Compare with teacher forcing (feed decode_ids, do not trust your own argmax), tolerance
  ~1e-3 abs for an fp32 implementation.

Numerics: weights drawn fp32, rounded to bf16; HF runs float32 on CPU, attention "{impl}";
embedding scale = bf16(sqrt(hidden)) (what HF does for a bf16 checkpoint); RMSNorm scale is w.
Weights: embed N(0,1/H); linear N(0,1/in); input/pre-ffw norms U(0.5,1.5); q/k norms U(0.2,0.6);
post-attn/post-ffw norms U(0.15,0.3); final norm U(3,9); layer_scalar U(0.5,1.5).

Models:
"""


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    outroot = argv[1]
    os.makedirs(outroot, exist_ok=True)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import golden_quant  # noqa: E402  (tools/golden_quant.py)
    golden_quant.selftest_e4m3_cast()
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    hf = import_hf()
    quant = (golden_quant.quantize_fp8_pb, golden_quant.dequantize_fp8_pb)

    results = []
    for spec in MODELS:
        results.append(do_model(spec, outroot, hf, quant))

    manifest = {r["name"]: {k: r[k] for k in ("dir", "fp8_dir", "seed", "covers", "T", "S",
                                              "embed_scale", "attn_implementation",
                                              "text_config_args", "vision_config_args",
                                              "audio_config_args", "checks")}
                for r in results}
    with open(os.path.join(outroot, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(outroot, "README.txt"), "w") as f:
        f.write(README_HEAD.format(tfv=transformers.__version__, tv=torch.__version__,
                                   impl=results[0]["attn_implementation"]))
        for r in results:
            tc = r["text_config_args"]
            f.write(f"\n* {r['name']} (+ {r['fp8_dir']}), seed {r['seed']}, T={r['T']} S={r['S']}\n")
            f.write(f"  {r['covers']}\n")
            f.write(f"  vocab {tc['vocab_size']}, hidden {tc['hidden_size']}, intermediate "
                    f"{tc['intermediate_size']}, layers {tc['layer_types']}\n")
            c = r["checks"]
            f.write(f"  checks: model.md reference vs HF max|diff| bf16 {c['ref_vs_hf_bf16']:.2e} "
                    f"fp8 {c['ref_vs_hf_fp8']:.2e}; cache vs no-cache {c['cache_vs_nocache_bf16']:.2e}"
                    f"/{c['cache_vs_nocache_fp8']:.2e}; min top-2 margin "
                    f"{c['min_top2_margin_bf16']:.2e}/{c['min_top2_margin_fp8']:.2e}\n")
        f.write("\nTensors of the first model's checkpoints:\n")
        f.write(f"  {results[0]['dir']}/model.safetensors:\n{results[0]['bf16_tensors']}\n")
        f.write(f"  {results[0]['fp8_dir']}/model.safetensors:\n{results[0]['fp8_tensors']}\n")

    total = 0
    for dp, _, fns in os.walk(outroot):
        for fn in fns:
            total += os.path.getsize(os.path.join(dp, fn))
    print("\n==== summary ====")
    for r in results:
        c = r["checks"]
        print(f"{r['name']:10s} ref-vs-HF {c['ref_vs_hf_bf16']:.2e}/{c['ref_vs_hf_fp8']:.2e}  "
              f"cache-vs-nocache {c['cache_vs_nocache_bf16']:.2e}/{c['cache_vs_nocache_fp8']:.2e}  "
              f"margin {c['min_top2_margin_bf16']:.2e}/{c['min_top2_margin_fp8']:.2e}  "
              f"decode(bf16) {r['decode_ids_bf16'][:12]}...")
    print(f"\n{results[0]['dir']}/model.safetensors:\n{results[0]['bf16_tensors']}")
    print(f"\n{results[0]['fp8_dir']}/model.safetensors:\n{results[0]['fp8_tensors']}")
    print(f"\ntotal size of {outroot}: {total / 1e6:.2f} MB")
    if total > 6.5e6:
        print("!!! fixtures exceed ~6 MB")
    worst = max(max(r["checks"]["ref_vs_hf_bf16"], r["checks"]["ref_vs_hf_fp8"]) for r in results)
    print("model.md reference agrees with HF on all models" if worst < 1e-3 else
          "!!! model.md reference DISAGREES with HF on at least one model (see above)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
