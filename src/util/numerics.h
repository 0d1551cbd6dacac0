/* Number formats of the checkpoints: BF16 and FP8 E4M3 (torch.float8_e4m3fn).
 *
 * E4M3: s eeee mmm, bias 7, no infinities, 0x7F/0xFF are NaN, max 448.
 * Our encoder rounds to nearest even and saturates to +-448 (torch's cast does
 * not saturate; see docs checkpoint-format.md §1), so it never writes a NaN
 * byte for a finite input. */
#ifndef G4_UTIL_NUMERICS_H
#define G4_UTIL_NUMERICS_H

#include <stdint.h>
#include <string.h>

#define G4_FP8_MAX 448.0f

typedef uint16_t g4_bf16;

static inline float g4_bf16_to_f32(g4_bf16 h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as torch's float->bfloat16 cast. NaN stays a quiet NaN. */
static inline g4_bf16 g4_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (g4_bf16)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (g4_bf16)(bits >> 16);
}

/* fp32 -> bf16 -> fp32: what a bf16 store does to a value. */
static inline float g4_round_bf16(float f) { return g4_bf16_to_f32(g4_f32_to_bf16(f)); }

/* Exact value of every E4M3 code; NaN for 0x7F and 0xFF. */
extern float g4_fp8_e4m3_table[256]; /* filled before main() */

static inline float g4_fp8_to_f32(uint8_t code) { return g4_fp8_e4m3_table[code]; }

/* Round to nearest even, saturating to +-448; NaN in gives 0x7F (sign kept). */
static inline uint8_t g4_f32_to_fp8(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    uint8_t sign = (uint8_t)((bits >> 24) & 0x80u);
    uint32_t abs_bits = bits & 0x7fffffffu;
    if (abs_bits > 0x7f800000u) return sign | 0x7f;
    if (abs_bits >= 0x43e00000u) return sign | 0x7e; /* |f| >= 448 */
    if (abs_bits < 0x3c800000u) {                   /* |f| < 2^-6: subnormal grid of 2^-9 */
        float a;
        memcpy(&a, &abs_bits, 4);
        /* a*512 is exact; the magic add rounds it to an integer with RNE. */
        float r = (a * 512.0f + 8388608.0f) - 8388608.0f;
        return sign | (uint8_t)r; /* r == 8 is the smallest normal, code 0x08 */
    }
    /* Normal: keep 3 of the 23 mantissa bits, RNE, then rebias 127 -> 7. */
    uint32_t rounded = abs_bits + 0x7ffffu + ((abs_bits >> 20) & 1u);
    uint32_t code = (rounded >> 20) - ((127u - 7u) << 3);
    if (code > 0x7e) code = 0x7e; /* (448, 464] rounds to 448; above saturates */
    return sign | (uint8_t)code;
}

/* At load: a NaN byte becomes +-448 (0x7F -> 0x7E, 0xFF -> 0xFE), the clamp
 * ModelOpt's calibration assumed. Returns how many bytes were repaired. */
uint64_t g4_fp8_repair_nan(uint8_t *codes, uint64_t n);

#endif
