#!/usr/bin/env python3
"""Golden fixtures for the bit-exact FP8 (E4M3) 128x128 block quantizer (`fp8_pb_wo`).

Usage (from the repo root, where PyTorch + safetensors are installed):

    python3 tools/golden_quant.py tests/fixtures/quant

Writes OUTDIR/inputs.safetensors (BF16 weights, one tensor per NAME) and
OUTDIR/expected.safetensors with, for every NAME:

    NAME.max.weight        F8_E4M3 [out, in]
    NAME.max.weight_scale  F32     [R, 1, C, 1]
    NAME.mse.weight        F8_E4M3 [out, in]
    NAME.mse.weight_scale  F32     [R, 1, C, 1]
    NAME.mse.best_k        I32     [R, C]      (debug aid: chosen candidate index k;
                                               meaningless for all-zero blocks)
and once:
    mse_multipliers        F32     [39]

THE CONTRACT (what the C quantizer must reproduce bit for bit)
==============================================================
All arithmetic is IEEE float32 (round-to-nearest-even, subnormals honoured: no
FTZ/DAZ, no -ffast-math, no FMA contraction of w*s etc.) unless said otherwise.
w is the BF16 input widened to float32 (exact).

1. Blocking.  R = ceil(out/128), C = ceil(in/128).  Zero-pad w on the bottom and
   right to [R*128, C*128] and view it as [R, 128, C, 128].  Block (r, c) holds
   rows r*128.., cols c*128..  Padding zeros take part in every block reduction
   (they never change a max of |.| and add exactly 0 to the error sums, except
   in the degenerate case of rule 3, which rule 3 overrides anyway).

2. amax[r, c] = max |w| over the block (float32, exact).  Shape [R, 1, C, 1].

3. Degenerate rule (applied to the final amax of either method):
   if amax_final == 0 or amax_final is NaN then amax_final = 448.0 (scale 1.0).

4. method "max":  amax_final = amax (then rule 3);  scale = amax_final / 448.0f
   (a float32 division, not a multiplication by 1/448).

5. method "mse":
   c_k = torch.linspace(0.25, 4.0, 39, dtype=torch.float32), k = 0..38; the exact
   float32 values are stored as `mse_multipliers` (use them, do not recompute).
   For every k and every block:
       amax_c = c_k * amax                      (float32 multiply)
       s      = 448.0f / amax_c                 (float32 division)
       x      = clamp(w * s, -448, 448)         (float32 multiply, per element)
       xq     = float(e4m3_rne(x)) * (amax_c / 448.0f)
                  (amax_c / 448.0f is its own float32 division; then a float32 multiply)
       e      = (w - xq)^2                      (float32 subtract, float32 square)
       loss_k = sum over the 128x128 block of (double)e, accumulated in float64
   best = the FIRST k with the minimal loss (torch.argmin over the [39, R, C]
   float64 losses; ties -> lowest k).  The float64 summation order is free: the
   script checks (and warns otherwise) that in these fixtures the best and the
   second-best loss of every block differ by more than 1e-9 relative, far above
   float64 reordering noise.  All-zero blocks give NaN losses (0*inf);
   whatever k is picked there, rule 3 makes the result independent of it.
   amax_final = c_best * amax (float32 multiply), then rule 3;
   scale = amax_final / 448.0f.
   (The inputs keep every non-zero block's amax >= 1e-20 so that 448/amax_c never
   overflows float32; a C implementation need not define behaviour below that.)

6. Bytes (both methods):  q = e4m3_rne(clamp(w / scale, -448, 448)), where
   w / scale is a float32 DIVISION by the block's scale (not a multiplication by
   its reciprocal) and e4m3_rne is round-to-nearest-even to float8_e4m3fn
   (subnormals included, sign of zero kept: -0.0 -> 0x80).  The clamp comes first,
   so no NaN byte (0x7F/0xFF) is ever produced.  The padded result is cropped
   back to [out, in].

7. The scale tensor is float32 [R, 1, C, 1]; dequantisation is
   w ~= float(q[i, j]) * scale[i // 128, 0, j // 128, 0].

Differences from ModelOpt's own export (see docs/checkpoint-format.md §3.5): ModelOpt
divides without clamping (so MSE scales with c < 1 can yield NaN bytes on
non-saturating PyTorch builds); this contract clamps, which equals the
saturating behaviour and what calibration itself assumed.
"""

import math
import os
import sys

import torch

E4M3_MAX = 448.0
BLOCK = 128
N_CANDIDATES = 39


def mse_multipliers() -> torch.Tensor:
    return torch.linspace(0.25, 4.0, N_CANDIDATES, dtype=torch.float32)


def _blocked(w: torch.Tensor):
    """fp32 [out,in] -> zero-padded view [R,128,C,128] (a fresh tensor), R, C."""
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(w.shape)}")
    out_f, in_f = w.shape
    R = (out_f + BLOCK - 1) // BLOCK
    C = (in_f + BLOCK - 1) // BLOCK
    wp = torch.zeros(R * BLOCK, C * BLOCK, dtype=torch.float32)
    wp[:out_f, :in_f] = w
    return wp.view(R, BLOCK, C, BLOCK), R, C


def _degenerate(amax: torch.Tensor) -> torch.Tensor:
    bad = (amax == 0) | torch.isnan(amax)
    return torch.where(bad, torch.full_like(amax, E4M3_MAX), amax)


def _to_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Clamp to +-448 first (never rely on the cast saturating), then RNE cast."""
    return torch.clamp(x, -E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)


def quantize_fp8_pb(w_in: torch.Tensor, method: str = "max", return_gap: bool = False):
    """Quantize one [out,in] weight.

    w_in: any float tensor; it is converted to float32 (pass the BF16 tensor to get
    exactly the contract above).  Returns (q F8_E4M3 [out,in], scale F32 [R,1,C,1],
    best_k I32 [R,C] or None for "max"); with return_gap=True also the smallest
    relative gap (L2 - L1) / L1 between the best and second-best MSE losses over the
    blocks whose best loss is finite and > 0 (inf if none / "max").
    """
    w = w_in.detach().to(torch.float32).cpu()
    out_f, in_f = w.shape
    wb, R, C = _blocked(w)
    amax = wb.abs().amax(dim=(1, 3), keepdim=True)  # [R,1,C,1] fp32
    best_k = None
    gap = float("inf")
    if method == "max":
        amax_final = amax
    elif method == "mse":
        cands = mse_multipliers()
        losses = []
        for k in range(N_CANDIDATES):
            amax_c = cands[k] * amax                      # fp32
            s = E4M3_MAX / amax_c                         # fp32 division
            xq = _to_e4m3(wb * s).to(torch.float32) * (amax_c / E4M3_MAX)
            d = wb - xq                                   # fp32
            err = d * d                                   # fp32
            losses.append(err.to(torch.float64).sum(dim=(1, 3)))  # [R, C] float64
        L = torch.stack(losses, dim=0)                    # [39, R, C]
        best_k = torch.argmin(L, dim=0)                   # first minimum
        two = torch.topk(L, 2, dim=0, largest=False).values  # [2, R, C]
        ok = torch.isfinite(two[0]) & torch.isfinite(two[1]) & (two[0] > 0)
        if bool(ok.any()):
            gap = float(((two[1] - two[0]) / two[0])[ok].min())
        c_best = cands[best_k].view(R, 1, C, 1)
        amax_final = c_best * amax                        # fp32
        best_k = best_k.to(torch.int32)
    else:
        raise ValueError(f"unknown method {method!r}")
    amax_final = _degenerate(amax_final)
    scale = amax_final / E4M3_MAX                         # fp32 division
    if scale.dtype != torch.float32 or tuple(scale.shape) != (R, 1, C, 1):
        raise RuntimeError(f"internal: bad scale {scale.dtype} {tuple(scale.shape)}")
    q = _to_e4m3(wb / scale)                              # division, not reciprocal
    q = q.view(R * BLOCK, C * BLOCK)[:out_f, :in_f].contiguous()
    if return_gap:
        return q, scale.contiguous(), best_k, gap
    return q, scale.contiguous(), best_k


def dequantize_fp8_pb(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float(q) * scale per 128x128 block, in float32; returns [out,in] fp32."""
    out_f, in_f = q.shape
    R, _, C, _ = scale.shape
    qp = torch.zeros(R * BLOCK, C * BLOCK, dtype=torch.float32)
    qp[:out_f, :in_f] = q.to(torch.float32)
    d = qp.view(R, BLOCK, C, BLOCK) * scale
    return d.view(R * BLOCK, C * BLOCK)[:out_f, :in_f].contiguous()


def selftest_e4m3_cast():
    """Fail loudly if this PyTorch's fp32 -> e4m3 cast is not RNE as assumed."""
    cases = [
        (0.0, 0x00), (-0.0, 0x80), (1.0, 0x38), (448.0, 0x7E), (-448.0, 0xFE),
        (1.0625, 0x38),            # tie between 1.0 (m=0) and 1.125 (m=1) -> even 1.0
        (1.1875, 0x3A),            # tie between 1.125 (m=1) and 1.25 (m=2) -> 1.25
        (272.0, 0x78),             # tie between 256 and 288 -> 256
        (304.0, 0x7A),             # tie between 288 and 320 -> 320
        (2.0 ** -9, 0x01),         # smallest subnormal
        (2.0 ** -10, 0x00),        # half of the smallest subnormal: tie -> 0
        (1.5 * 2.0 ** -9, 0x02),   # tie between 1 and 2 subnormal steps -> 2
        (2.0 ** -6, 0x08),         # smallest normal
        (-3.0 * 2.0 ** -10, 0x82), # -1.5 steps -> -2 steps
    ]
    x = torch.tensor([c[0] for c in cases], dtype=torch.float32)
    got = x.to(torch.float8_e4m3fn).view(torch.uint8).tolist()
    bad = [(v, hex(e), hex(g)) for (v, e), g in zip(cases, got) if e != g]
    if bad:
        raise RuntimeError(f"float8_e4m3fn cast is not the assumed RNE: {bad}")


def bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16)


def build_inputs(seed: int = 20260604):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float32)

    def rand_sign(*shape):
        return torch.where(rand(*shape) < 0.5, torch.tensor(-1.0), torch.tensor(1.0))

    t = {}
    # 1. Plain weights, shapes not multiples of 128.
    t["w200x300"] = randn(200, 300, std=0.02)
    # 2. Rows of very different magnitude (2^-12 .. 2^12) across one block column.
    w = randn(130, 129)
    w *= torch.pow(2.0, torch.randint(-12, 13, (130, 1), generator=g).to(torch.float32))
    t["w130x129"] = w
    # 3. A single element.
    t["w1x1"] = torch.tensor([[0.37]], dtype=torch.float32)
    t["w1x1_neg"] = torch.tensor([[-1.0e-3]], dtype=torch.float32)
    # 4. 127x257 with an all-zero block (rows 0..126, cols 128..255) and a
    #    partial last column block (col 256 only).
    w = randn(127, 257, std=0.05)
    w[:, 128:256] = 0.0
    t["w127x257_zeroblock"] = w
    # 5. 256x384: a 2x3 grid of hand-made blocks.
    w = torch.zeros(256, 384)
    # (0,0) ordinary gaussian
    w[0:128, 0:128] = randn(128, 128, std=0.03)
    # (0,1) one outlier 1e4x larger than the rest
    b = randn(128, 128, std=1e-3)
    b[17, 93] = 10.0
    w[0:128, 128:256] = b
    # (0,2) all zeros, some of them negative zero
    b = torch.zeros(128, 128)
    b[::3, ::5] = -0.0
    w[0:128, 256:384] = b
    # (1,0) exact E4M3 ties after scaling: amax = 1.75 = 448 * 2^-8 -> max scale
    #       is exactly 2^-8, so w/scale = w * 256 exactly.
    # Each value below is an exact midpoint between two neighbouring E4M3 values
    # (RNE goes to the even mantissa), one or two per binade, plus subnormal ties.
    ties = torch.tensor([1.0625, 1.1875, 2.125, 2.375, 4.25, 4.75, 8.5, 9.5, 17.0, 19.0,
                         34.0, 38.0, 68.0, 76.0, 136.0, 152.0, 272.0, 304.0, 432.0,
                         0.53125, 0.59375, 2.0 ** -6 * 1.0625, 2.0 ** -6 * 1.1875,
                         2.0 ** -10, 1.5 * 2.0 ** -9, 2.5 * 2.0 ** -9, 7.5 * 2.0 ** -9],
                        dtype=torch.float32)
    sign = rand_sign(128, 128)
    idx = torch.randint(0, ties.numel(), (128, 128), generator=g)
    b = ties[idx] * sign / 256.0
    b[0, 0] = 448.0 / 256.0          # sets amax = 1.75
    b[5, 7] = -0.0
    w[128:256, 0:128] = b
    # (1,1) tiny values: one 1.0, the rest 1e-7..1e-4 (e4m3 subnormals / zero
    #       after scaling by 448), with negative zeros sprinkled in
    mag = torch.pow(10.0, -7.0 + 3.0 * rand(128, 128))
    b = mag * rand_sign(128, 128)
    b[64, 64] = 1.0
    b[1::7, 2::9] = -0.0
    w[128:256, 128:256] = b
    # (1,2) every element +-0.3 (constant magnitude)
    w[128:256, 256:384] = 0.3 * rand_sign(128, 128)
    t["w256x384_blocks"] = w
    # 6. A row vector and a column vector spanning several blocks.
    t["w1x300"] = randn(1, 300, std=0.5)
    t["w300x1"] = randn(300, 1, std=0.5)
    # 7. An entirely zero tensor (with negative zeros).
    w = torch.zeros(64, 64)
    w[::2, ::2] = -0.0
    t["zeros64x64"] = w
    # 8. Extreme (but safe) magnitudes: block amax ~1e-12 and ~1e15 (errors and
    #    their squares stay normal float32 numbers).
    w = randn(128, 256)
    w[:, 0:128] *= 1e-12
    w[:, 128:256] *= 1e15
    t["w128x256_extreme"] = w
    # 9. Large values (>448) and heavy tails in one exact block.
    b = randn(128, 128) ** 3 * 100.0
    t["w128x128_heavy"] = b
    # 10. Uniform values, fine-grained, one block column, partial rows.
    t["w129x128_uniform"] = (rand(129, 128) * 2.0 - 1.0) * 0.125
    return {k: bf16(v) for k, v in t.items()}


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    from safetensors.torch import save_file

    outdir = argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    selftest_e4m3_cast()

    inputs = build_inputs()
    expected = {"mse_multipliers": mse_multipliers().contiguous()}
    print(f"torch {torch.__version__}")
    print("mse_multipliers:", [float(x) for x in expected["mse_multipliers"]])
    print(f"{'name':24s} {'shape':>10s} {'blocks':>6s}  max:sq-err  mse:best_k(min..max)  mse<=max")
    for name, wbf in inputs.items():
        if wbf.dtype != torch.bfloat16:
            raise RuntimeError(f"{name}: input must be bf16")
        w32 = wbf.to(torch.float32)
        res = {}
        for method in ("max", "mse"):
            q, s, best, gap = quantize_fp8_pb(wbf, method, return_gap=True)
            if method == "mse" and gap < 1e-9:
                # float64 sums in another order could flip such a near-tie
                print(f"  WARNING: {name}: best and second-best MSE losses within "
                      f"{gap:.2e} (relative): the summation order could matter")
            if q.dtype != torch.float8_e4m3fn or tuple(q.shape) != tuple(wbf.shape):
                raise RuntimeError(f"{name}.{method}: bad q {q.dtype} {tuple(q.shape)}")
            qb = q.view(torch.uint8)
            if bool(((qb == 0x7F) | (qb == 0xFF)).any()):
                raise RuntimeError(f"{name}.{method}: NaN byte produced")
            if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
                raise RuntimeError(f"{name}.{method}: non-finite or non-positive scale")
            deq = dequantize_fp8_pb(q, s)
            err = float(((deq - w32) ** 2).to(torch.float64).sum())
            res[method] = err
            expected[f"{name}.{method}.weight"] = q
            expected[f"{name}.{method}.weight_scale"] = s
            if best is not None:
                expected[f"{name}.{method}.best_k"] = best.contiguous()
            if method == "max":
                # max calibration: every block's dequant error is within half an
                # e4m3 step of the block amax (|x| <= 448 -> rel step <= 1/8).
                # half a step is 16 units of the scale; fp32 rounding of q*s can add an ulp
                bound = float(s.max()) * 16.5 + 1e-30
                if float((deq - w32).abs().max()) > bound:
                    raise RuntimeError(f"{name}: max-calibrated error out of bounds")
                # sign of zero must survive
                negz = (w32 == 0) & torch.signbit(w32)
                if bool(negz.any()) and not bool((qb[negz] == 0x80).all()):
                    raise RuntimeError(f"{name}: -0.0 did not map to 0x80")
            else:
                bk = best
        R, _, C, _ = expected[f"{name}.max.weight_scale"].shape
        print(f"{name:24s} {str(tuple(wbf.shape)):>10s} {R}x{C:<4d}  {res['max']:.3e}  "
              f"{int(bk.min())}..{int(bk.max())}  {res['mse'] <= res['max'] * (1 + 1e-6)}")
        if res["mse"] > res["max"] * (1 + 1e-6) + 1e-30:
            # Not an error of the contract: the sweep has no c=1.0, so MSE may
            # lose to max on a block; only report it.
            print(f"  note: {name}: mse total error {res['mse']:.6e} > max {res['max']:.6e}")

    save_file({k: v.contiguous() for k, v in inputs.items()},
              os.path.join(outdir, "inputs.safetensors"), metadata={"format": "pt"})
    save_file({k: v.contiguous() for k, v in expected.items()},
              os.path.join(outdir, "expected.safetensors"),
              metadata={"format": "pt", "contract": "tools/golden_quant.py docstring"})
    total = sum(os.path.getsize(os.path.join(outdir, f))
                for f in ("inputs.safetensors", "expected.safetensors"))
    print(f"wrote {len(inputs)} inputs, {len(expected)} expected tensors to {outdir} "
          f"({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
