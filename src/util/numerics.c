/* FP8 E4M3 decode table and NaN repair (see numerics.h). */
#include "util/numerics.h"

#include <math.h>

float g4_fp8_e4m3_table[256];

/* Runs before main(), so the inline decoder needs no init call. */
__attribute__((constructor)) static void fill_e4m3_table(void) {
    for (int code = 0; code < 256; code++) {
        int exponent = (code >> 3) & 15, mantissa = code & 7;
        float mag = exponent == 0 ? ldexpf((float)mantissa, -9)
                                  : ldexpf(1.0f + mantissa / 8.0f, exponent - 7);
        if (exponent == 15 && mantissa == 7) mag = NAN;
        g4_fp8_e4m3_table[code] = (code & 0x80) ? -mag : mag;
    }
}

uint64_t g4_fp8_repair_nan(uint8_t *codes, uint64_t n) {
    uint64_t repaired = 0;
    for (uint64_t i = 0; i < n; i++) {
        if ((codes[i] & 0x7f) == 0x7f) {
            codes[i] = (uint8_t)(codes[i] - 1);
            repaired++;
        }
    }
    return repaired;
}
