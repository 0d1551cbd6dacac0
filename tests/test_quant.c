/* fp8_pb_wo quantizer: its own invariants, and bit-exact agreement with the
 * PyTorch implementation of the same math (tools/golden_quant.py, run on the
 * GPU machine; fixtures in tests/fixtures/quant). */
#include "test.h"
#include "model/quant.h"
#include "model/safetensors.h"

#include <stdint.h>

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 8388608.0f - 1.0f;
}

static void test_round_matches_codec(void) {
    int bad = 0;
    for (uint32_t b = 0; b < 0x43e00000u; b += 0x3ffu) { /* every magnitude up to 448 */
        float y;
        memcpy(&y, &b, 4);
        for (int s = 0; s < 2; s++) {
            float x = s ? -y : y;
            float want = g4_fp8_to_f32(g4_f32_to_fp8(x)), got = g4_fp8_round(x);
            if (memcmp(&want, &got, 4) && !(want == 0 && got == 0)) bad++;
        }
    }
    CHECKF(bad == 0, "%d values differ", bad);
    CHECK(g4_fp8_round(448.0f) == 448.0f && g4_fp8_round(-448.0f) == -448.0f);
}

static void test_multipliers(void) {
    float m[G4_MSE_STEPS];
    g4_mse_multipliers(m);
    CHECK(m[0] == 0.25f && m[G4_MSE_STEPS - 1] == 4.0f);
    for (int i = 1; i < G4_MSE_STEPS; i++) CHECK(m[i] > m[i - 1]);
    for (int i = 0; i < G4_MSE_STEPS; i++) CHECKF(m[i] != 1.0f, "1.0 is not on the grid (index %d)", i);
}

/* Max calibration: scale = amax/448 over each block's real elements, zero
 * blocks get scale 1, every code decodes to within half a step. */
static void test_max_blocks(void) {
    const int rows = 200, cols = 300; /* partial edge blocks both ways */
    float *w = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) w[i] = frand() * (1 + i % 7);
    for (int r = 128; r < 200; r++) /* block (1, 0) all zero */
        for (int c = 0; c < 128; c++) w[r * cols + c] = 0.0f;
    uint8_t *q = malloc(rows * cols);
    float s[2 * 3];
    g4_quantize_f32(w, rows, cols, G4_CALIB_MAX, q, s);
    for (int br = 0; br < 2; br++) {
        for (int bc = 0; bc < 3; bc++) {
            float amax = 0;
            for (int r = br * 128; r < rows && r < br * 128 + 128; r++)
                for (int c = bc * 128; c < cols && c < bc * 128 + 128; c++) amax = fmaxf(amax, fabsf(w[r * cols + c]));
            float want = amax == 0 ? 1.0f : amax / 448.0f;
            CHECKF(s[br * 3 + bc] == want, "block %d,%d: %g vs %g", br, bc, s[br * 3 + bc], want);
        }
    }
    int far = 0;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            float scale = s[(r / 128) * 3 + c / 128], x = w[r * cols + c];
            float back = g4_fp8_to_f32(q[r * cols + c]) * scale;
            if (fabsf(back - x) > fabsf(x) / 16 + scale * 0.001f) far++;
        }
    }
    CHECKF(far == 0, "%d values off by more than half a step", far);
    free(w);
    free(q);
}

static double block_loss(const float *w, const uint8_t *q, float scale, int n) {
    double l = 0;
    for (int i = 0; i < n; i++) {
        double e = w[i] - g4_fp8_to_f32(q[i]) * scale;
        l += e * e;
    }
    return l;
}

/* MSE calibration never does worse than max on its own objective. */
static void test_mse_not_worse(void) {
    const int n = 128 * 128;
    float *w = malloc(sizeof(float) * n);
    uint8_t *qm = malloc(n), *qe = malloc(n);
    for (int trial = 0; trial < 4; trial++) {
        for (int i = 0; i < n; i++) w[i] = frand() * frand() * frand();
        w[trial * 100] = 30.0f; /* an outlier makes max calibration coarse */
        float sm, se;
        g4_quantize_f32(w, 128, 128, G4_CALIB_MAX, qm, &sm);
        g4_quantize_f32(w, 128, 128, G4_CALIB_MSE, qe, &se);
        CHECK(se != sm);
        CHECKF(block_loss(w, qe, se, n) <= block_loss(w, qm, sm, n) * 1.0001, "trial %d", trial);
    }
    free(w);
    free(qm);
    free(qe);
}

/* ------------------------------------------------------------ golden */

static const st_tensor *get(const st_file *f, const char *name) {
    const st_tensor *t = st_find(f, name);
    CHECKF(t != NULL, "fixture tensor '%s' missing", name);
    return t;
}

static void compare_one(const st_tensor *in, const st_file *exp, const char *calib_name, g4_calib calib) {
    char name[200];
    int rows = (int)in->shape[0], cols = (int)in->shape[1];
    const int nblk = g4_qblocks(rows) * g4_qblocks(cols);
    uint8_t *q = malloc((size_t)rows * cols);
    float *s = malloc(sizeof(float) * nblk);
    g4_quantize_bf16(in->data, rows, cols, calib, q, s);
    snprintf(name, sizeof name, "%s.%s.weight", in->name, calib_name);
    const st_tensor *eq = get(exp, name);
    snprintf(name, sizeof name, "%s.%s.weight_scale", in->name, calib_name);
    const st_tensor *es = get(exp, name);
    if (eq && es) {
        CHECK(eq->dtype == ST_F8_E4M3 && es->dtype == ST_F32 && es->ndim == 4);
        int bad_s = 0, bad_q = 0;
        for (int i = 0; i < nblk; i++) bad_s += memcmp(&s[i], (const float *)es->data + i, 4) != 0;
        for (size_t i = 0; i < (size_t)rows * cols; i++) bad_q += q[i] != ((const uint8_t *)eq->data)[i];
        CHECKF(bad_s == 0 && bad_q == 0, "%s %s: %d of %d scales, %d of %d bytes differ", in->name, calib_name,
               bad_s, nblk, bad_q, rows * cols);
    }
    free(q);
    free(s);
}

static void test_golden_pytorch(void) {
    char path[512];
    g4_err err;
    snprintf(path, sizeof path, "%s/quant/inputs.safetensors", t_fixture_dir());
    st_file *in = st_open(path, &err);
    snprintf(path, sizeof path, "%s/quant/expected.safetensors", t_fixture_dir());
    st_file *exp = st_open(path, &err);
    REQUIRE(in && exp);
    const st_tensor *mt = get(exp, "mse_multipliers");
    if (mt) {
        float m[G4_MSE_STEPS];
        g4_mse_multipliers(m);
        CHECK(st_numel(mt) == G4_MSE_STEPS && !memcmp(m, mt->data, sizeof m));
    }
    int compared = 0;
    for (int i = 0; i < in->n_tensors; i++) {
        if (in->tensors[i].dtype != ST_BF16 || in->tensors[i].ndim != 2) continue;
        compare_one(&in->tensors[i], exp, "max", G4_CALIB_MAX);
        compare_one(&in->tensors[i], exp, "mse", G4_CALIB_MSE);
        compared++;
    }
    CHECKF(compared >= 5, "only %d fixture tensors", compared);
    st_close(in);
    st_close(exp);
}

TEST_MAIN("quant", TEST_CASE(test_round_matches_codec), TEST_CASE(test_multipliers), TEST_CASE(test_max_blocks),
          TEST_CASE(test_mse_not_worse), TEST_CASE(test_golden_pytorch))
