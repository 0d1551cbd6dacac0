#!/usr/bin/env python3
"""Fits the constants of pick_tiles (src/cuda/gemm_wgmma.cu) to `gemm_check --sweep M` logs.

  tools/fit_gemm_tiles.py bench/gemm_sweeps/h200-fe503b3/sweep*.log

The model is the C one: a CTA takes A ns per (BT x blocks per SM + C) x K block plus D ns per wave,
the CTAs run in waves of (SMs x the blocks of that tile an SM holds), the time is at least the weights
streamed once per token tile at BW bytes/ns, and a K split adds its reduction (partials read and y
written at E bytes/ns). What is fitted is the choice, not the time: for each (M, shape) the model's pick
is looked up in the sweep, and the loss is the time lost against the sweep's best, weighted by how
often a prefill runs that GEMM (40 sliding, 8 full layers). Blocks per SM: two for tiles of <= 32
tokens (shared memory and registers, as cudaOccupancyMaxActiveBlocksPerMultiprocessor reported them
on the H200), else one.
"""
import itertools
import math
import re
import sys

SHAPES = {  # name in the sweep: (N rows, K, GeGLU)
    'q/k/v sliding': (8192, 3840, False), 'q/k full': (8704, 3840, False), 'o sliding': (3840, 4096, False),
    'o full': (3840, 8192, False), 'gate+up geglu': (15360, 3840, True), 'down': (3840, 15360, False)}
PER_PREFILL = {'q/k/v sliding': 40, 'q/k full': 8, 'o sliding': 40, 'o full': 8, 'gate+up geglu': 48, 'down': 48}
TILES = [24, 32, 48, 64, 80, 96, 128, 152, 176, 208]
SPLITS = [1, 2, 3, 4, 6, 8]
SMS = 132


def read_sweeps(paths):
    us = {}
    for path in paths:
        for line in open(path):
            m = re.match(r'sweep M=(\d+) (.+?)\s+BT=\s*(\d+) split=(\d+)\s+([\d.]+) us', line)
            if m:
                us[(int(m[1]), m[2].strip(), int(m[3]), int(m[4]))] = float(m[5])
    return us


def model_ns(p, M, shape, bt, s):
    a, c, d, e, bw = p
    N, K, geglu = SHAPES[shape]
    row_tiles = (N + 63) // 64 if geglu else (N + 127) // 128
    kblocks, token_tiles = K // 128, math.ceil(M / bt)
    ctas = token_tiles * row_tiles * s
    occ = min(2 if bt <= 32 else 1, math.ceil(ctas / SMS))
    ns = math.ceil(ctas / (SMS * occ)) * (a * (bt * occ + c) * math.ceil(kblocks / s) + d)
    ns = max(ns, token_tiles * N * K * (2 if geglu else 1) / bw)
    if s > 1:
        ns += (s * (2 if geglu else 1) + 1) * M * N * 4 / e
    return ns


def pick(p, M, shape):
    kblocks = SHAPES[shape][1] // 128
    options = [(bt, s) for bt in TILES for s in SPLITS
               if not (M <= TILES[-1] and bt < M) and (s == 1 or s <= kblocks // 2)]
    return min(options, key=lambda o: model_ns(p, M, shape, *o))


def loss_by_m(p, us):
    out = {}
    for M in sorted({k[0] for k in us}):
        lost = 0.0
        for shape, n in PER_PREFILL.items():
            best = min(v for k, v in us.items() if k[0] == M and k[1] == shape)
            lost += n * (us[(M, shape) + pick(p, M, shape)] - best)
        out[M] = lost
    return out


def main():
    us = read_sweeps(sys.argv[1:])
    grid = itertools.product([3.5, 4, 4.5, 5], [64, 80, 96, 120], [3000, 4000, 6000], [1500, 2500, 4000],
                             [2500, 3500, 4500])
    best = min(grid, key=lambda p: sum(loss_by_m(p, us).values()))
    print('A, C, D, E, BW =', best)
    for M, lost in loss_by_m(best, us).items():
        print(f'M = {M:5d}: the chosen tiles lose {lost / 1000:.2f} ms per prefill against the sweep\'s best')


if __name__ == '__main__':
    main()
