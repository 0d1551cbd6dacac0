/* BF16 and FP8 E4M3 codecs: all 256 codes, every rounding boundary. */
#include "test.h"
#include "util/numerics.h"

#include <stdint.h>

static float from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static uint32_t to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* Independent decode straight from the format definition. */
static double e4m3_value(int code) {
    int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
    return s ? -v : v;
}

static void test_decode_all_codes(void) {
    int nans = 0;
    for (int c = 0; c < 256; c++) {
        double want = e4m3_value(c);
        float got = g4_fp8_to_f32((uint8_t)c);
        if (isnan(want)) { CHECK(isnan(got)); nans++; continue; }
        CHECKF((double)got == want, "code 0x%02x: %g != %g", c, got, want);
    }
    CHECK(nans == 2);
    CHECK(g4_fp8_to_f32(0x7e) == 448.0f && g4_fp8_to_f32(0xfe) == -448.0f);
    CHECK(g4_fp8_to_f32(0x01) == 0.001953125f);
    CHECK(g4_fp8_to_f32(0x08) == 0.015625f);
}

static void test_encode_roundtrips_every_code(void) {
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) continue;
        uint8_t back = g4_f32_to_fp8(g4_fp8_to_f32((uint8_t)c));
        CHECKF(back == c, "code 0x%02x re-encodes as 0x%02x", c, back);
    }
}

/* Nearest-even reference by exhaustive search over the finite codes. */
static uint8_t encode_reference(float x) {
    if (isnan(x)) return signbit(x) ? 0xff : 0x7f;
    double a = fabs((double)x);
    if (a > 448.0) a = 448.0;
    int best = 0;
    double best_d = INFINITY;
    for (int c = 0; c <= 0x7e; c++) {
        double d = fabs(e4m3_value(c) - a);
        if (d < best_d || (d == best_d && (c & 1) == 0 && (best & 1) == 1)) { best = c; best_d = d; }
    }
    return (uint8_t)(best | (signbit(x) ? 0x80 : 0));
}

/* Every midpoint between neighbouring codes, and the fp32 values one ulp
 * either side of it, must round as nearest-even says. */
static void test_encode_every_boundary(void) {
    for (int c = 0; c < 0x7e; c++) {
        float lo = (float)e4m3_value(c), hi = (float)e4m3_value(c + 1);
        float mid = (float)(((double)lo + hi) / 2); /* exact: few mantissa bits */
        float probes[3] = {mid, from_bits(to_bits(mid) - 1), from_bits(to_bits(mid) + 1)};
        for (int p = 0; p < 3; p++) {
            for (int sgn = 0; sgn < 2; sgn++) {
                float x = sgn ? -probes[p] : probes[p];
                uint8_t got = g4_f32_to_fp8(x), want = encode_reference(x);
                CHECKF(got == want, "x=%.9g: got 0x%02x want 0x%02x", x, got, want);
            }
        }
        /* exact ties go to the even code */
        uint8_t tie = g4_f32_to_fp8(mid);
        CHECKF((tie & 1) == 0, "tie %.9g -> 0x%02x", mid, tie);
    }
}

static void test_encode_saturates_and_nan(void) {
    CHECK(g4_f32_to_fp8(448.0f) == 0x7e);
    CHECK(g4_f32_to_fp8(463.99f) == 0x7e);
    CHECK(g4_f32_to_fp8(464.0f) == 0x7e);
    CHECK(g4_f32_to_fp8(465.0f) == 0x7e);
    CHECK(g4_f32_to_fp8(1e30f) == 0x7e);
    CHECK(g4_f32_to_fp8(-1e30f) == 0xfe);
    CHECK(g4_f32_to_fp8(INFINITY) == 0x7e);
    CHECK(g4_f32_to_fp8(-INFINITY) == 0xfe);
    CHECK((g4_f32_to_fp8(NAN) & 0x7f) == 0x7f);
    CHECK(g4_f32_to_fp8(0.0f) == 0x00);
    CHECK(g4_f32_to_fp8(-0.0f) == 0x80);
    CHECK(g4_f32_to_fp8(1e-30f) == 0x00);         /* underflows to zero */
    CHECK(g4_f32_to_fp8(0.0009765625f) == 0x00);  /* half the smallest subnormal: tie to even 0 */
    CHECK(g4_f32_to_fp8(0.00098f) == 0x01);
}

/* A dense sweep over fp32 bit patterns against the search reference. */
static void test_encode_sweep(void) {
    int bad = 0;
    for (uint32_t b = 0x3a000000u; b < 0x44000000u; b += 0x1f3u) {
        float x = from_bits(b);
        if (g4_f32_to_fp8(x) != encode_reference(x)) bad++;
    }
    CHECKF(bad == 0, "%d mismatches", bad);
}

static void test_nan_repair(void) {
    uint8_t codes[6] = {0x7f, 0xff, 0x7e, 0x00, 0x80, 0x7f};
    CHECK(g4_fp8_repair_nan(codes, 6) == 3);
    CHECK(codes[0] == 0x7e && codes[1] == 0xfe && codes[5] == 0x7e && codes[2] == 0x7e);
}

static void test_bf16(void) {
    CHECK(g4_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(g4_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(g4_round_bf16(61.967733f) == 62.0f); /* sqrt(3840) as HF rounds it */
    /* ties to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 */
    CHECK(g4_f32_to_bf16(from_bits(0x3f808000u)) == 0x3f80);
    CHECK(g4_f32_to_bf16(from_bits(0x3f818000u)) == 0x3f82);
    CHECK(g4_f32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);
    CHECK(isnan(g4_bf16_to_f32(g4_f32_to_bf16(NAN))));
    CHECK(g4_bf16_to_f32(g4_f32_to_bf16(INFINITY)) == INFINITY);
}

/* The running worst error of the golden and engine tests (test.h): a NaN must win and stay, so that a
 * tolerance check fails on NaN logits. */
static void test_worse_keeps_nan(void) {
    CHECK(t_worse(0.5, 0.25) == 0.5 && t_worse(0.25, 0.5) == 0.5);
    CHECK(isnan(t_worse(0.5, NAN)));
    CHECK(isnan(t_worse(t_worse(0.0, NAN), 2.0)));
    CHECK(!(t_worse(0.0, NAN) < 1e-4));
}

TEST_MAIN("numerics", TEST_CASE(test_decode_all_codes), TEST_CASE(test_encode_roundtrips_every_code),
          TEST_CASE(test_encode_every_boundary), TEST_CASE(test_encode_saturates_and_nan),
          TEST_CASE(test_encode_sweep), TEST_CASE(test_nan_repair), TEST_CASE(test_bf16),
          TEST_CASE(test_worse_keeps_nan))
