/* Row-wise kernels of the forward pass: embedding, RMSNorm, the sandwich-norm
 * residual update, the column split of the fused q/k/v projection, and the
 * per-head q/k/v post-processing (norms, RoPE, the KV-cache write). One block
 * per row (or per head). CPU references:
 * cpu_rmsnorm, cpu_rope and the loops of src/cpu/forward.c. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"

#define ROW_THREADS 256

/* 1 / sqrt(mean(x^2) + eps) of one row, every thread gets it. */
__device__ float rms_inv(const float *x, int n, float eps, float *red) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += x[i] * x[i];
    ss = g4k_block_sum(ss, red);
    return 1.0f / sqrtf(ss / n + eps);
}

__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int n, float eps) {
    __shared__ float red[32];
    g4k_wait_inputs();
    g4k_allow_next();
    const float *xr = x + (size_t)blockIdx.x * n;
    float *orow = out + (size_t)blockIdx.x * n;
    const float inv = rms_inv(xr, n, eps, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * inv * (w ? w[i] : 1.0f);
}

extern "C" void g4k_rmsnorm(float *out, const float *x, const float *w, int M, int n, float eps, g4_stream s) {
    g4k_launch(rmsnorm_kernel, M, ROW_THREADS, 0, s, out, x, w, n, eps);
}

/* h += rms(y; w_post); h *= scalar; out = rms(h; w_next). y is read into h
 * first, so h and out may not alias y. */
__global__ void residual_norm_kernel(float *h, float *y, int parts, const float *w_post, float scalar, float *out,
                                     const float *w_next, int n, float eps) {
    __shared__ float red[32];
    g4k_wait_inputs();
    g4k_allow_next();
    float *hr = h + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    const size_t part_stride = (size_t)gridDim.x * n;
    for (int p = 1; p < parts; p++) /* add the split-K parts into part 0 */
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] += yr[p * part_stride + i];
    __syncthreads();
    const float inv = rms_inv(yr, n, eps, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x) hr[i] = (hr[i] + yr[i] * inv * w_post[i]) * scalar;
    if (!w_next) return;
    __syncthreads();
    const float inv2 = rms_inv(hr, n, eps, red);
    float *orow = out + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = hr[i] * inv2 * w_next[i];
}

/* The same with float4 accesses and the row held in registers between the
 * two reductions (n % 4 == 0, n <= 4 * 4 * 512): one load of y and h, one
 * store of h and out. Decode runs this 96 times a step on one block each, so
 * its latency, not its bytes, is what counts. */
#define RES_VEC 4
__global__ void __launch_bounds__(512) residual_norm_vec(float *h, const float *y, int parts, const float *w_post,
                                                          float scalar, float *out, const float *w_next, int n,
                                                          float eps) {
    __shared__ float red[32];
    const int n4 = n / 4;
    /* the norm weights do not depend on the previous kernel: load them while it drains */
    float4 wpv[RES_VEC], wnv[RES_VEC];
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            wpv[k] = reinterpret_cast<const float4 *>(w_post)[i];
            if (w_next) wnv[k] = reinterpret_cast<const float4 *>(w_next)[i];
        }
    }
    g4k_wait_inputs();
    g4k_allow_next();
    float4 *hr = reinterpret_cast<float4 *>(h + (size_t)blockIdx.x * n);
    const float4 *yr = reinterpret_cast<const float4 *>(y + (size_t)blockIdx.x * n);
    float4 yv[RES_VEC], hv[RES_VEC];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            yv[k] = yr[i], hv[k] = hr[i];
            for (int p = 1; p < parts; p++) { /* split-K parts */
                const float4 t = yr[(size_t)p * gridDim.x * n4 + i];
                yv[k].x += t.x, yv[k].y += t.y, yv[k].z += t.z, yv[k].w += t.w;
            }
            ss += yv[k].x * yv[k].x + yv[k].y * yv[k].y + yv[k].z * yv[k].z + yv[k].w * yv[k].w;
        }
    }
    const float inv = 1.0f / sqrtf(g4k_block_sum(ss, red) / n + eps);
    float ss2 = 0.0f;
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            const float4 w = wpv[k];
            hv[k].x = (hv[k].x + yv[k].x * inv * w.x) * scalar;
            hv[k].y = (hv[k].y + yv[k].y * inv * w.y) * scalar;
            hv[k].z = (hv[k].z + yv[k].z * inv * w.z) * scalar;
            hv[k].w = (hv[k].w + yv[k].w * inv * w.w) * scalar;
            hr[i] = hv[k];
            ss2 += hv[k].x * hv[k].x + hv[k].y * hv[k].y + hv[k].z * hv[k].z + hv[k].w * hv[k].w;
        }
    }
    if (!w_next) return;
    const float inv2 = 1.0f / sqrtf(g4k_block_sum(ss2, red) / n + eps);
    float4 *orow = reinterpret_cast<float4 *>(out + (size_t)blockIdx.x * n);
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            const float4 w = wnv[k];
            orow[i] = make_float4(hv[k].x * inv2 * w.x, hv[k].y * inv2 * w.y, hv[k].z * inv2 * w.z, hv[k].w * inv2 * w.w);
        }
    }
}

extern "C" void g4k_residual_norm(float *h, const float *y, int parts, const float *w_post, float scalar, float *out,
                                  const float *w_next, int M, int n, float eps, g4_stream s) {
    if (n % 4 == 0 && n <= 4 * RES_VEC * 512) {
        int threads = (n / 4 + RES_VEC - 1) / RES_VEC;
        threads = threads < 32 ? 32 : (threads + 31) / 32 * 32;
        g4k_launch(residual_norm_vec, M, threads, 0, s, h, y, parts, w_post, scalar, out, w_next, n, eps);
    } else {
        g4k_launch(residual_norm_kernel, M, ROW_THREADS, 0, s, h, const_cast<float *>(y), parts, w_post, scalar, out,
                   w_next, n, eps);
    }
}

__global__ void embed_kernel(float *h, const uint16_t *E, const int32_t *tokens, int n, int tiled, float scale) {
    g4k_wait_inputs();
    g4k_allow_next();
    const int tok = tokens[blockIdx.x];
    const uint8_t *bytes = reinterpret_cast<const uint8_t *>(E);
    float *hr = h + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const size_t at = tiled ? G4K_TILED_OFFSET(tok, 2 * i, 2 * n) : ((size_t)tok * n + i) * 2;
        hr[i] = g4k_bf16_to_f32(*reinterpret_cast<const uint16_t *>(bytes + at)) * scale;
    }
}

extern "C" void g4k_embed(float *h, const g4_dmatrix *E, const int32_t *tokens, int M, float scale, g4_stream s) {
    g4k_launch(embed_kernel, M, ROW_THREADS, 0, s, h, static_cast<const uint16_t *>(E->data), tokens, E->cols,
               E->tiled, scale);
}

/* dst_i[m][j] = src[m * ld + col_i + j] for j < width_i: one launch for every
 * part. It replaced three cudaMemcpy2D and a k -> v copy per layer: the
 * prefill's q/k/v stage went from 2.45 to 2.09 ms at 145 tokens (perf log). */
struct column_parts {
    float *dst[G4K_MAX_COLUMN_PARTS];
    int col[G4K_MAX_COLUMN_PARTS], width[G4K_MAX_COLUMN_PARTS];
    int n;
};

__global__ void copy_columns_kernel(const float *src, int ld, column_parts p) {
    g4k_wait_inputs();
    g4k_allow_next();
    const float *row = src + (size_t)blockIdx.x * ld;
    for (int i = 0; i < p.n; i++) {
        const float4 *from = reinterpret_cast<const float4 *>(row + p.col[i]);
        float4 *to = reinterpret_cast<float4 *>(p.dst[i] + (size_t)blockIdx.x * p.width[i]);
        for (int j = threadIdx.x; j < p.width[i] / 4; j += blockDim.x) to[j] = from[j];
    }
}

extern "C" void g4k_copy_columns(const float *src, int ld, int M, float *const *dst, const int *col, const int *width,
                                 int n_parts, g4_stream s) {
    column_parts p = {};
    p.n = n_parts < G4K_MAX_COLUMN_PARTS ? n_parts : G4K_MAX_COLUMN_PARTS;
    for (int i = 0; i < p.n; i++) p.dst[i] = dst[i], p.col[i] = col[i], p.width[i] = width[i];
    g4k_launch(copy_columns_kernel, M, ROW_THREADS, 0, s, src, ld, p);
}

/* ------------------------------------------------------------ q/k/v heads */

/* RMS-normalize one head in place (w NULL: weightless), then rotate-half RoPE
 * over the first `pairs` frequency slots. blockDim.x >= head_dim / 2. */
__device__ void norm_rope_head(float *x, const float *w, int hd, int pairs, float theta, int pos, float eps,
                               float *red) {
    const float inv = rms_inv(x, hd, eps, red);
    const int half = hd / 2, i = threadIdx.x;
    float a = 0.0f, b = 0.0f;
    if (i < half) {
        a = x[i] * inv * (w ? w[i] : 1.0f);
        b = x[i + half] * inv * (w ? w[i + half] : 1.0f);
    }
    __syncthreads(); /* every thread has read x before anyone writes */
    if (i < half) {
        if (i < pairs) {
            const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
            const float angle = (float)pos * inv_freq;
            float sn, cs;
            sincosf(angle, &sn, &cs);
            const float ra = a * cs - b * sn, rb = b * cs + a * sn;
            a = ra, b = rb;
        }
        x[i] = a;
        x[i + half] = b;
    }
}

__device__ void store_kv_row(void *cache, g4k_kv_dtype dt, size_t off, const float *x, int n, float scale) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (dt == G4K_KV_F32) static_cast<float *>(cache)[off + i] = x[i];
        else if (dt == G4K_KV_BF16) static_cast<uint16_t *>(cache)[off + i] = g4k_f32_to_bf16(x[i]);
        else static_cast<uint8_t *>(cache)[off + i] = g4k_f32_to_fp8(x[i] / scale);
    }
}

/* grid (M, n_heads + n_kv_heads): a query head, or a KV head (k and v). */
__global__ void qkv_post_kernel(g4k_attn a, float *q, float *k, float *v, const float *q_norm, const float *k_norm,
                                const int *pos0) {
    __shared__ float red[32];
    g4k_wait_inputs();
    g4k_allow_next();
    const int m = blockIdx.x, head = blockIdx.y, hd = a.head_dim, pos = *pos0 + m;
    const int q_dim = a.n_heads * hd, kv_dim = a.n_kv_heads * hd;
    if (head < a.n_heads) {
        norm_rope_head(q + (size_t)m * q_dim + head * hd, q_norm, hd, a.rope_pairs, a.rope_theta, pos, a.eps, red);
        return;
    }
    const int j = head - a.n_heads;
    float *kr = k + (size_t)m * kv_dim + j * hd, *vr = v + (size_t)m * kv_dim + j * hd;
    norm_rope_head(kr, k_norm, hd, a.rope_pairs, a.rope_theta, pos, a.eps, red);
    __syncthreads();
    norm_rope_head(vr, nullptr, hd, 0, 1.0f, pos, a.eps, red); /* weightless v_norm, no RoPE */
    __syncthreads();
    const size_t off = (size_t)(a.ring ? pos % a.ring : pos) * kv_dim + j * hd;
    store_kv_row(a.k_cache, a.kv_dtype, off, kr, hd, a.k_scale);
    store_kv_row(a.v_cache, a.kv_dtype, off, vr, hd, a.v_scale);
}

extern "C" void g4k_qkv_post(const g4k_attn *a, float *q, float *k, float *v, const float *q_norm,
                             const float *k_norm, const int *pos0, int M, g4_stream s) {
    int threads = a->head_dim / 2;
    threads = threads < 32 ? 32 : (threads + 31) / 32 * 32;
    g4k_launch(qkv_post_kernel, dim3(M, a->n_heads + a->n_kv_heads), threads, 0, s, *a, q, k, v, q_norm, k_norm, pos0);
}

__global__ void record_advance_kernel(int *pos, const int32_t *token, int32_t *hist) {
    g4k_wait_inputs();
    g4k_allow_next();
    hist[*pos + 1] = *token;
    *pos += 1;
}

extern "C" void g4k_record_advance(int *pos, const int32_t *token, int32_t *hist, g4_stream s) {
    g4k_launch(record_advance_kernel, 1, 1, 0, s, pos, token, hist);
}
