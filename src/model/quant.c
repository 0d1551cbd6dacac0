/* fp8_pb_wo block quantization (see quant.h for the math). */
#include "model/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void g4_mse_multipliers(float out[G4_MSE_STEPS]) {
    /* torch.linspace for float: step in fp32; the first half counts up from
     * start, the second half down from end, each a fused multiply-add (what
     * its vectorized CPU kernel does; checked against torch's values). */
    const float start = 0.25f, end = 4.0f;
    const float step = (end - start) / (float)(G4_MSE_STEPS - 1);
    const int halfway = G4_MSE_STEPS / 2;
    for (int i = 0; i < G4_MSE_STEPS; i++)
        out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(G4_MSE_STEPS - i - 1), end);
}

typedef struct {
    float v[G4_QBLOCK * G4_QBLOCK];
    int rows, cols; /* real extent of this block */
} block_buf;

static float block_amax(const block_buf *b) {
    float amax = 0.0f;
    int n = b->rows * b->cols;
    for (int i = 0; i < n; i++) {
        float a = fabsf(b->v[i]);
        amax = a > amax || isnan(a) ? a : amax; /* NaN propagates, like torch.amax */
    }
    return amax;
}

/* Sum of fp32 squared errors of one candidate, accumulated in double: the
 * quantizer's hot loop (39 candidates x every weight), written with GCC
 * vector extensions so it runs 8 lanes wide on any x86-64; target_clones adds
 * AVX2/AVX-512 builds picked at run time. No FMA and no reassociation of the
 * float math: lane values equal the scalar definition bit for bit. The lane
 * sums fix the (double) summation order; it can only move the argmin at exact
 * ties (see quant.h). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

static inline v8f fp8_round_v8(v8f y) {
    const v8i bits = (v8i)y;
    const v8i sign = bits & (int32_t)0x80000000u, mag = bits & 0x7fffffff;
    const v8f sub = ((v8f)mag + 16384.0f) - 16384.0f;          /* below 2^-6: multiples of 2^-9, RNE */
    const v8i normal = (mag + 0x7ffff + ((mag >> 20) & 1)) & (int32_t)0xfff00000u; /* 3 mantissa bits, RNE */
    const v8i is_sub = mag < 0x3c800000;                         /* lanes of all ones or zeros */
    return (v8f)(((v8i)sub & is_sub) | (normal & ~is_sub) | sign);
}

static inline v8f clamp448_v8(v8f y) { /* a NaN lane stays NaN, as with torch.clamp */
    const v8i hi = y > 448.0f, lo = y < -448.0f;
    const v8f c = {448, 448, 448, 448, 448, 448, 448, 448};
    v8i r = ((v8i)y & ~hi) | ((v8i)c & hi);
    return (v8f)((r & ~lo) | ((v8i)(-c) & lo));
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static double fake_quant_loss(const float *v, int n, float amax_c) {
    const float up = 448.0f / amax_c, down = amax_c / 448.0f;
    v8d acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f x;
        memcpy(&x, v + i, sizeof x);
        const v8f e = x - fp8_round_v8(clamp448_v8(x * up)) * down;
        acc += __builtin_convertvector(e * e, v8d);
    }
    double tail = 0.0;
    for (; i < n; i++) {
        float y = v[i] * up;
        y = y > 448.0f ? 448.0f : y;
        y = y < -448.0f ? -448.0f : y;
        const float e = v[i] - g4_fp8_round(y) * down;
        tail += (double)(e * e);
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

static float mse_amax(const block_buf *b, float amax, const float mult[G4_MSE_STEPS]) {
    int best = 0;
    double best_loss = 0.0;
    for (int k = 0; k < G4_MSE_STEPS; k++) {
        double loss = fake_quant_loss(b->v, b->rows * b->cols, mult[k] * amax);
        if (isnan(loss)) return mult[k] * amax; /* torch.argmin picks the first NaN */
        if (k == 0 || loss < best_loss) { /* the first minimum */
            best = k;
            best_loss = loss;
        }
    }
    return mult[best] * amax;
}

static float block_scale(const block_buf *b, g4_calib calib, const float mult[G4_MSE_STEPS]) {
    float amax = block_amax(b);
    if (calib == G4_CALIB_MSE && amax > 0.0f && !isnan(amax) && !isinf(amax)) amax = mse_amax(b, amax, mult);
    if (amax == 0.0f || isnan(amax)) amax = 448.0f;
    return amax / 448.0f;
}

static void encode_block(const block_buf *b, float scale, uint8_t *codes, int row0, int col0, int cols) {
    for (int r = 0; r < b->rows; r++)
        for (int c = 0; c < b->cols; c++)
            codes[(size_t)(row0 + r) * cols + col0 + c] = g4_f32_to_fp8(b->v[r * b->cols + c] / scale);
}

/* One block at a time, every block independent: the parallel loop. */
#define QUANTIZE_BODY(LOAD)                                                                   \
    float mult[G4_MSE_STEPS];                                                                  \
    g4_mse_multipliers(mult);                                                                  \
    const int rb = g4_qblocks(rows), cb = g4_qblocks(cols);                                    \
    _Pragma("omp parallel") {                                                                  \
        block_buf *b = malloc(sizeof *b);                                                      \
        _Pragma("omp for schedule(dynamic, 4)") for (long blk = 0; blk < (long)rb * cb; blk++) { \
            int row0 = (int)(blk / cb) * G4_QBLOCK, col0 = (int)(blk % cb) * G4_QBLOCK;        \
            b->rows = rows - row0 < G4_QBLOCK ? rows - row0 : G4_QBLOCK;                       \
            b->cols = cols - col0 < G4_QBLOCK ? cols - col0 : G4_QBLOCK;                       \
            for (int r = 0; r < b->rows; r++)                                                  \
                for (int c = 0; c < b->cols; c++)                                              \
                    b->v[r * b->cols + c] = LOAD(w[(size_t)(row0 + r) * cols + col0 + c]);     \
            float scale = block_scale(b, calib, mult);                                         \
            scales[blk] = scale;                                                               \
            encode_block(b, scale, codes, row0, col0, cols);                                   \
        }                                                                                      \
        free(b);                                                                               \
    }

#define LOAD_BF16(x) g4_bf16_to_f32(x)
#define LOAD_F32(x) (x)

void g4_quantize_bf16(const g4_bf16 *w, int rows, int cols, g4_calib calib, uint8_t *codes, float *scales) {
    QUANTIZE_BODY(LOAD_BF16)
}

void g4_quantize_f32(const float *w, int rows, int cols, g4_calib calib, uint8_t *codes, float *scales) {
    QUANTIZE_BODY(LOAD_F32)
}
