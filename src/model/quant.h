/* fp8_pb_wo block quantization: 128x128 blocks of a [rows, cols] weight, one
 * fp32 scale per block (the scale multiplies on dequantization), E4M3 codes.
 *
 * The math (the contract tools/golden_quant.py checks bit for bit):
 *   amax  = max |w| over the block's real elements (edge blocks are partial)
 *   max:  amax* = amax
 *   mse:  for c in linspace(0.25, 4.0, 39) (fp32, torch's formula):
 *           a = c*amax; xq = e4m3(clamp(w * (448/a), +-448)) * (a/448)
 *           loss(c) = sum over the block of fp32 (w - xq)^2, summed in double
 *         amax* = c_best * amax, c_best the first minimum
 *   amax* of 0 or NaN becomes 448 (scale 1), as ModelOpt's export does
 *   scale = amax* / 448;  code = e4m3(clamp(w / scale, +-448))
 * Dequantized value: e4m3_value(code) * scale. */
#ifndef G4_MODEL_QUANT_H
#define G4_MODEL_QUANT_H

#include <stdint.h>

#include "util/numerics.h"

#define G4_QBLOCK 128
#define G4_MSE_STEPS 39

typedef enum { G4_CALIB_MAX, G4_CALIB_MSE } g4_calib;

/* The 39 MSE multipliers, bit-identical to torch.linspace(0.25, 4.0, 39). */
void g4_mse_multipliers(float out[G4_MSE_STEPS]);

static inline int g4_qblocks(int n) { return (n + G4_QBLOCK - 1) / G4_QBLOCK; }

/* Quantizes a row-major BF16 [rows, cols] weight. codes: rows*cols bytes;
 * scales: g4_qblocks(rows) * g4_qblocks(cols) floats, row-major. Uses all
 * OpenMP threads. */
void g4_quantize_bf16(const g4_bf16 *w, int rows, int cols, g4_calib calib, uint8_t *codes, float *scales);

/* Same for an fp32 weight. */
void g4_quantize_f32(const float *w, int rows, int cols, g4_calib calib, uint8_t *codes, float *scales);

/* The value e4m3(y) takes, for |y| <= 448, without going through the byte. */
static inline float g4_fp8_round(float y) {
    uint32_t bits;
    memcpy(&bits, &y, 4);
    uint32_t sign = bits & 0x80000000u, mag = bits & 0x7fffffffu;
    float r;
    if (mag < 0x3c800000u) { /* below 2^-6: multiples of 2^-9, RNE via the fp32 adder */
        float a;
        memcpy(&a, &mag, 4);
        r = (a + 16384.0f) - 16384.0f;
    } else { /* keep 3 mantissa bits, RNE */
        uint32_t rounded = (mag + 0x7ffffu + ((mag >> 20) & 1u)) & 0xfff00000u;
        memcpy(&r, &rounded, 4);
    }
    uint32_t rb;
    memcpy(&rb, &r, 4);
    rb |= sign;
    memcpy(&r, &rb, 4);
    return r;
}

#endif
