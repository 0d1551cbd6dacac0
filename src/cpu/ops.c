/* CPU reference kernels (see ops.h). */
#include "cpu/ops.h"

#include <math.h>
#include <stdlib.h>

#include "util/numerics.h"

/* One weight row as fp32: BF16 widened, or E4M3 codes times their block scale. */
static void dequant_row(const g4_matrix *w, int r, float *out) {
    if (w->format == G4_MAT_BF16) {
        const g4_bf16 *row = (const g4_bf16 *)w->data + (size_t)r * w->cols;
        for (int c = 0; c < w->cols; c++) out[c] = g4_bf16_to_f32(row[c]);
        return;
    }
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->cols;
    const float *scales = w->scales + (size_t)(r / G4_QBLOCK) * g4_qblocks(w->cols);
    for (int c = 0; c < w->cols; c++) out[c] = g4_fp8_to_f32(row[c]) * scales[c / G4_QBLOCK];
}

static float dot(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

void cpu_matmul(const g4_matrix *w, const float *x, int n_tok, float *y) {
#pragma omp parallel
    {
        float *row = malloc(sizeof(float) * w->cols);
#pragma omp for schedule(static)
        for (int r = 0; r < w->rows; r++) {
            dequant_row(w, r, row); /* once per row, reused by every token */
            for (int t = 0; t < n_tok; t++) y[(size_t)t * w->rows + r] = dot(row, x + (size_t)t * w->cols, w->cols);
        }
        free(row);
    }
}

void cpu_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

void cpu_rope(float *x, int head_dim, int pairs, float theta, int pos) {
    int half = head_dim / 2;
    for (int i = 0; i < pairs; i++) {
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        float angle = (float)pos * inv_freq;
        float c = cosf(angle), s = sinf(angle);
        float a = x[i], b = x[i + half];
        x[i] = a * c - b * s;
        x[i + half] = b * c + a * s;
    }
}

float cpu_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
