# CPU check (no GPU) of src/cuda/gemm_wgmma.cu's data layout, under the stated
# assumptions about the hardware (CUTLASS's documented layouts):
#   - TMA 64-byte swizzle: byte offset bits [4,6) ^= bits [7,9); 128-byte
#     swizzle: bits [4,7) ^= bits [7,10) (tiles 1024-byte aligned);
#   - wgmma B from a K-major, 128-byte-swizzled descriptor: element (k, n) of
#     a k16 step at start + (n // 8) * SBO + (n % 8) * 128 + 2 * k, then the
#     same swizzle applied to the address;
#   - wgmma A from registers (CUTLASS ALayout_64x16): warp w, lane (g = lane/4,
#     t = lane%4), register r holds rows 16 w + g + 8 (r & 1), k = 2 t + 8 (r >> 1)
#     + {0, 1} (low half first).
# Emulates one 64-k stage: the x -> FP16 pre-pass permutation, the copies, the
# consumer's 32-bit fragment loads and conversions, the descriptor reads, and
# verifies that every product of every wgmma pairs the weight and activation
# of the same physical k, each k once, and that the fragment loads are free of
# bank conflicts. Run: python3 tests/gpu/gemm_wgmma_layout_check.py
def sw64(off): return off ^ (((off >> 7) & 3) << 4)
def sw128(off): return off ^ (((off >> 7) & 7) << 4)

def perm(p):  # physical k (within a 16-group) -> logical position written by wg_x_to_f16
    return 2 * (p >> 2) + (p & 1) + 8 * ((p >> 1) & 1)

def check(BT):
    # x as written by the pre-pass: xh[m][16 j + perm(i)] = x[m][16 j + i]; value tag = physical k
    xh_row = [None] * 64
    for j in range(4):
        for i in range(16):
            xh_row[16 * j + perm(i)] = 16 * j + i
    assert sorted(xh_row) == list(range(64))
    # the half-pair order written by the kernel: h[q] = (x[4q], x[4q+1]), h[4+q] = (x[4q+2], x[4q+3])
    written = []
    for q in range(4): written += [4 * q, 4 * q + 1]
    for q in range(4): written += [4 * q + 2, 4 * q + 3]
    assert [xh_row[L] for L in range(16)] == written, "pre-pass order"
    # TMA: weight tile segment (64 rows x 64 bytes, SW64), x tile (BT rows x 128 bytes, SW128)
    wsm = {}
    for r in range(64):
        for b in range(64):
            wsm[sw64(r * 64 + b)] = (r, b)       # byte b of row r = physical k b
    xsm = {}
    for n in range(BT):
        for e in range(64):
            xsm[sw128(n * 128 + 2 * e)] = (n, xh_row[e])
    # consumer fragments: per warp wq, lane, k16 step j
    for wq in range(4):
        bank_phases = {}
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            w_off = (16 * wq + g) * 64 + 4 * t
            swz = (g >> 1) & 3
            for j in range(4):
                ad = w_off + ((j ^ swz) << 4)
                for half, a in ((0, ad), (1, ad + 512)):
                    bank_phases.setdefault((j, half), []).append(a)
                    codes = [wsm[a + i] for i in range(4)]
                    row = 16 * wq + g + 8 * half
                    assert all(c[0] == row for c in codes), ("row", wq, lane, j, codes)
                    # lo word -> reg (half) holds logical k 2t, 2t+1; hi word -> reg 2 + half: 2t+8, 2t+9
                    for i, L in enumerate((2 * t, 2 * t + 1, 2 * t + 8, 2 * t + 9)):
                        wk = codes[i][1]
                        # wgmma B element (logical k = 16 j + L) for every token n
                        for n in range(BT):
                            addr = (n // 8) * 1024 + (n % 8) * 128 + 32 * j + 2 * L
                            xn, xk = xsm[sw128(addr)]
                            assert xn == n, ("token", n, xn)
                            assert xk == wk, ("k mismatch", wq, lane, j, L, n, wk, xk)
        for key, addrs in bank_phases.items():
            banks = [(a >> 2) & 31 for a in addrs]
            assert len(set(banks)) == 32, ("bank conflict", wq, key, banks)
    # each weight row sees each physical k exactly once over the 4 steps (follows from the above
    # being a bijection per (row, j): 4 threads x 4 codes = 16 distinct k of group j)
    print("BT=%d: ok" % BT)

for BT in (24, 152, 208):
    check(BT)
