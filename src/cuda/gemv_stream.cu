/* Streaming decode GEMV (1-2 tokens, FP8 weights): y = x W^T at the HBM rate.
 *
 * Why a second GEMV: the register-fed kernel in gemv.cu keeps only what its
 * registers hold in flight and pays a ramp and a drain per launch (7-9 us
 * measured, perf log 2026-11-27), which at ~5 launches per layer is a
 * quarter of the step. Here each block owns one contiguous run of rows (the
 * rows are spread evenly over one block per SM, so all blocks finish
 * together), and one thread streams that run into a ring of shared-memory
 * stages with bulk asynchronous copies (cp.async.bulk, completion counted on
 * an mbarrier): tens of KB in flight per SM whatever the warps are doing.
 * The weights do not depend on the previous kernel, so the first stages are
 * requested before waiting for it (programmatic dependent launch).
 *
 * The input is x itself, or the residual update that produces it
 * (gemv_input.cuh).
 *
 * Math: a thread takes 16-code chunks of every row of a stage; x stays fp32
 * in shared memory; fp32 accumulation. CPU reference:
 * cpu_matmul (src/cpu/ops.c) and the residual loop of src/cpu/forward.c. */
#include "cuda/common.cuh"
#include "cuda/gemv_input.cuh"
#include "cuda/kernels.h"

#include <stdlib.h>

#define STREAM_WARPS 8
#define STREAM_STAGES 4          /* ring depth (G4_STREAM_STAGES overrides, for experiments) */
#define STAGE_TARGET_BYTES 24576 /* ~3 stages in flight per SM cover the HBM latency (G4_STREAM_STAGE_BYTES) */
#define STAGE_MAX_ROWS 8         /* rows of codes per stage (GeGLU: 4 pairs) */
/* dynamic shared memory per block: the H100's 227 KB opt-in less room for the static arrays */
#define SMEM_LIMIT (226 * 1024)

struct stream_mat {
    const uint8_t *w;
    const float *scales;
    int rows;
    float *y;
};

struct stream_args {
    stream_mat mat[3];
    int n_mats, cols, total_rows, M;
    int geglu;          /* mat[0] gate, mat[1] up; rows count pairs */
    int stage_rows;     /* rows (pairs) per stage */
    int n_stages;       /* ring depth */
    g4k_gemv_input in;
};

/* ------------------------------------------------------------ bulk copies */

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void bar_init(uint64_t *bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count));
}

__device__ __forceinline__ void bar_expect(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void bar_wait(uint64_t *bar, int parity) {
    asm volatile(
        "{\n .reg .pred done;\n"
        "wait_%=:\n"
        " mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        " @!done bra wait_%=;\n}" ::"r"(smem_addr(bar)),
        "r"(parity)
        : "memory");
}

/* bytes (a multiple of 16, both addresses 16-byte aligned) from global to shared; completion on bar */
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_addr(dst)),
        "l"(src), "r"(bytes), "r"(smem_addr(bar))
        : "memory");
}

/* ------------------------------------------------------------ stages */

/* A stage: `n` consecutive rows starting at local row `row` of matrix `mat`. */
struct stage_geom {
    int mat, row, n;
};

/* The stage that starts at global row g (cut at the end of the block's run
 * and at the end of a matrix, so that a stage is one contiguous span). */
__device__ __forceinline__ stage_geom stage_at(const stream_args &a, int g, int run_end) {
    stage_geom s = {0, g, 0};
    if (a.n_mats > 1 && s.row >= a.mat[0].rows) {
        s.row -= a.mat[0].rows, s.mat = 1;
        if (a.n_mats > 2 && s.row >= a.mat[1].rows) s.row -= a.mat[1].rows, s.mat = 2;
    }
    const stream_mat &m = s.mat == 0 ? a.mat[0] : s.mat == 1 ? a.mat[1] : a.mat[2];
    int n = a.stage_rows;
    if (n > run_end - g) n = run_end - g;
    if (n > m.rows - s.row) n = m.rows - s.row;
    s.n = n;
    return s;
}

__device__ __forceinline__ const stream_mat &mat_of(const stream_args &a, int i) {
    return i == 0 ? a.mat[0] : i == 1 ? a.mat[1] : a.mat[2];
}

/* One thread: request stage `s` into buffer `buf`. */
__device__ __forceinline__ void issue_stage(const stream_args &a, const stage_geom &s, uint8_t *buf, uint64_t *bar) {
    const uint32_t bytes = (uint32_t)s.n * a.cols;
    /* the buffer was last read through the generic proxy; order that before the async writes */
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    if (a.geglu) {
        bar_expect(bar, 2 * bytes);
        bulk_copy(buf, a.mat[0].w + (size_t)s.row * a.cols, bytes, bar);
        bulk_copy(buf + (size_t)a.stage_rows * a.cols, a.mat[1].w + (size_t)s.row * a.cols, bytes, bar);
    } else {
        bar_expect(bar, bytes);
        bulk_copy(buf, mat_of(a, s.mat).w + (size_t)s.row * a.cols, bytes, bar);
    }
}

/* ------------------------------------------------------------ the input x */

/* x into shared memory, swizzled (gemv_input.cuh). */
template <int M>
__device__ void stage_input(const stream_args &a, float *xs, float *red) {
    g4k_gemv_input_swizzled<M>(a.in, a.cols, xs, a.cols, red);
}

/* ------------------------------------------------------------ the kernel */

/* Shared memory: mbarriers | partial sums [2][rows][warps][M] | x [M][cols] | stages. */
struct smem_layout {
    size_t red, x, ring, total;
};

__host__ __device__ inline smem_layout layout_for(int M, int cols, int stage_bytes, int n_stages) {
    smem_layout l;
    l.red = 128; /* up to 16 mbarriers */
    l.x = l.red + sizeof(float) * 2 * STAGE_MAX_ROWS * STREAM_WARPS * M;
    l.x = (l.x + 127) / 128 * 128;
    l.ring = l.x + sizeof(float) * (size_t)M * cols;
    l.ring = (l.ring + 127) / 128 * 128;
    l.total = l.ring + (size_t)n_stages * stage_bytes;
    return l;
}

/* acc[r][m] += (row r of the stage) . x[m] over this thread's 16-code chunks
 * (chunk c of every row of the stage: the x values are loaded once for all
 * rows). */
template <int M>
__device__ __forceinline__ void stage_dot(const stream_args &a, const stage_geom &s, const uint8_t *buf,
                                          const float *xs, float acc[STAGE_MAX_ROWS][M]) {
    const int nchunk = a.cols / 16, units = (a.cols + 127) / 128, rows = a.geglu ? 2 * s.n : s.n;
    const float4 *x4 = reinterpret_cast<const float4 *>(xs);
    for (int c = threadIdx.x; c < nchunk; c += blockDim.x) {
        float xv[M][16];
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float4 t = x4[(size_t)m * nchunk * 4 + g4k_x_slot(c, k)];
                xv[m][4 * k] = t.x, xv[m][4 * k + 1] = t.y, xv[m][4 * k + 2] = t.z, xv[m][4 * k + 3] = t.w;
            }
#pragma unroll
        for (int r = 0; r < STAGE_MAX_ROWS; r++) {
            if (r >= rows) break;
            /* GeGLU stages: gate rows, then up rows at stage_rows */
            const bool is_up = a.geglu && r >= s.n;
            const int slot = is_up ? a.stage_rows + r - s.n : r, row = s.row + (is_up ? r - s.n : r);
            const stream_mat &mat = a.geglu ? (is_up ? a.mat[1] : a.mat[0]) : mat_of(a, s.mat);
            const uint4 wv = *reinterpret_cast<const uint4 *>(buf + (size_t)slot * a.cols + (size_t)c * 16);
            float w[16];
            g4k_fp8x4_to_f32_biased(wv.x, w);
            g4k_fp8x4_to_f32_biased(wv.y, w + 4);
            g4k_fp8x4_to_f32_biased(wv.z, w + 8);
            g4k_fp8x4_to_f32_biased(wv.w, w + 12);
            const float scale = __ldg(mat.scales + (size_t)(row / 128) * units + c / 8) * G4K_FP8_SCALE_BIAS;
#pragma unroll
            for (int m = 0; m < M; m++) {
                float part = 0.0f;
#pragma unroll
                for (int k = 0; k < 16; k++) part += w[k] * xv[m][k];
                acc[r][m] += part * scale; /* part is x 2^-120: no overflow before the scale */
            }
        }
    }
}

/* The warps' partial sums of stage s (in red) -> y. */
template <int M>
__device__ __forceinline__ void stage_store(const stream_args &a, const stage_geom &s, const float *red) {
    const int outputs = s.n * M;
    for (int t = threadIdx.x; t < outputs; t += blockDim.x) {
        const int r = t / M, m = t % M;
        float v = 0.0f, u = 0.0f;
        for (int w = 0; w < STREAM_WARPS; w++) v += red[(r * STREAM_WARPS + w) * M + m];
        if (a.geglu) {
            for (int w = 0; w < STREAM_WARPS; w++) u += red[((s.n + r) * STREAM_WARPS + w) * M + m];
            a.mat[0].y[(size_t)m * a.mat[0].rows + s.row + r] = g4k_gelu_tanh(v) * u;
        } else {
            const stream_mat &mat = mat_of(a, s.mat);
            mat.y[(size_t)m * mat.rows + s.row + r] = v;
        }
    }
}

template <int M>
__global__ void __launch_bounds__(STREAM_WARPS * 32, 2) gemv_stream_kernel(stream_args a) {
    extern __shared__ __align__(128) uint8_t smem[];
    uint64_t *bars = reinterpret_cast<uint64_t *>(smem);
    const int rows_per_stage_bytes = a.stage_rows * a.cols * (a.geglu ? 2 : 1);
    const smem_layout L = layout_for(M, a.cols, rows_per_stage_bytes, a.n_stages);
    float *red = reinterpret_cast<float *>(smem + L.red);
    float *xs = reinterpret_cast<float *>(smem + L.x);
    uint8_t *ring = smem + L.ring;
    __shared__ float sum32[32];

    /* this block's run of rows: an even share */
    const int run_begin = (int)((long long)a.total_rows * blockIdx.x / gridDim.x);
    const int run_end = (int)((long long)a.total_rows * (blockIdx.x + 1) / gridDim.x);

    int g_issue = run_begin, n_issued = 0;
    if (threadIdx.x == 0) {
        for (int i = 0; i < a.n_stages; i++) bar_init(&bars[i], 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        for (; n_issued < a.n_stages && g_issue < run_end; n_issued++) {
            const stage_geom s = stage_at(a, g_issue, run_end);
            issue_stage(a, s, ring + (size_t)n_issued * rows_per_stage_bytes, &bars[n_issued]);
            g_issue += s.n;
        }
    }
    g4k_wait_inputs(); /* x (or y and h) come from the previous kernel */
    g4k_allow_next();
    stage_input<M>(a, xs, sum32);
    __syncthreads();

    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int g = run_begin;
    for (int i = 0; g < run_end; i++) {
        const stage_geom s = stage_at(a, g, run_end);
        const int buf = i % a.n_stages;
        bar_wait(&bars[buf], (i / a.n_stages) & 1);
        float acc[STAGE_MAX_ROWS][M];
#pragma unroll
        for (int r = 0; r < STAGE_MAX_ROWS; r++)
#pragma unroll
            for (int m = 0; m < M; m++) acc[r][m] = 0.0f;
        stage_dot<M>(a, s, ring + (size_t)buf * rows_per_stage_bytes, xs, acc);
        float *red_i = red + (size_t)(i & 1) * STAGE_MAX_ROWS * STREAM_WARPS * M;
        const int rows = a.geglu ? 2 * s.n : s.n;
#pragma unroll
        for (int r = 0; r < STAGE_MAX_ROWS; r++) {
            if (r >= rows) break;
#pragma unroll
            for (int m = 0; m < M; m++) {
                const float v = g4k_warp_sum(acc[r][m]);
                if (lane == 0) red_i[(r * STREAM_WARPS + warp) * M + m] = v;
            }
        }
        __syncthreads(); /* buffer `buf` is free; red_i is complete */
        if (threadIdx.x == 0 && g_issue < run_end) {
            const stage_geom next = stage_at(a, g_issue, run_end);
            issue_stage(a, next, ring + (size_t)buf * rows_per_stage_bytes, &bars[buf]);
            g_issue += next.n;
        }
        stage_store<M>(a, s, red_i); /* red_i is rewritten two stages later, after another barrier */
        g += s.n;
    }
}

/* ------------------------------------------------------------ host side */

static int sm_count(void) {
    static int sms = 0;
    if (!sms && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) sms = 132;
    return sms;
}

static int env_int(const char *name, int fallback) {
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : fallback;
}

static int n_stages(void) {
    static int n = 0;
    if (!n) n = env_int("G4_STREAM_STAGES", STREAM_STAGES);
    return n > 16 ? 16 : n; /* 16 mbarriers fit before the partial sums */
}

static int stage_rows_for(int cols, bool geglu) {
    static int target = 0;
    if (!target) target = env_int("G4_STREAM_STAGE_BYTES", STAGE_TARGET_BYTES);
    const int per_row = cols * (geglu ? 2 : 1);
    int r = target / per_row;
    const int max_r = geglu ? STAGE_MAX_ROWS / 2 : STAGE_MAX_ROWS;
    return r < 1 ? 1 : r > max_r ? max_r : r;
}

static size_t smem_for(int M, int cols, bool geglu) {
    return layout_for(M, cols, stage_rows_for(cols, geglu) * cols * (geglu ? 2 : 1), n_stages()).total;
}

extern "C" int g4k_gemv_stream_fits(const g4_dmatrix *w, int n_mats, int M, int geglu) {
    if (M < 1 || M > 2) return 0;
    for (int i = 0; i < n_mats; i++)
        if (!w[i].fp8 || w[i].cols != w[0].cols) return 0;
    /* bulk copies move 16-byte multiples between 16-byte-aligned addresses */
    if (w[0].cols % 16) return 0;
    return smem_for(M, w[0].cols, geglu) <= SMEM_LIMIT;
}

template <int M>
static void launch(const stream_args &a, cudaStream_t s) {
    static bool configured = false;
    if (!configured)
        configured = cudaFuncSetAttribute(gemv_stream_kernel<M>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          SMEM_LIMIT) == cudaSuccess;
    static int per_sm = 0; /* blocks per SM (G4_STREAM_BLOCKS_PER_SM, for experiments) */
    if (!per_sm) per_sm = env_int("G4_STREAM_BLOCKS_PER_SM", 1);
    int blocks = per_sm * sm_count();
    if (blocks > a.total_rows) blocks = a.total_rows;
    g4k_launch(gemv_stream_kernel<M>, blocks, STREAM_WARPS * 32, smem_for(M, a.cols, a.geglu), s, a);
}

static void run(stream_args &a, cudaStream_t s) {
    a.stage_rows = stage_rows_for(a.cols, a.geglu);
    a.n_stages = n_stages();
    if (a.M == 1) launch<1>(a, s);
    else launch<2>(a, s);
}

static stream_mat to_mat(const g4_dmatrix *m, float *y) {
    stream_mat g = {static_cast<const uint8_t *>(m->data), m->scales, m->rows, y};
    return g;
}

extern "C" void g4k_gemv_stream(const g4_dmatrix *w, float *const *y, int n_mats, const g4k_gemv_input *in, int M,
                                g4_stream s) {
    stream_args a = {};
    a.n_mats = n_mats, a.cols = w[0].cols, a.M = M, a.in = *in;
    for (int i = 0; i < n_mats; i++) {
        a.mat[i] = to_mat(&w[i], y[i]);
        a.total_rows += w[i].rows;
    }
    run(a, s);
}

extern "C" void g4k_gemv_stream_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const g4k_gemv_input *in,
                                      int M, g4_stream s) {
    stream_args a = {};
    a.n_mats = 2, a.cols = gate->cols, a.M = M, a.in = *in, a.geglu = 1, a.total_rows = gate->rows;
    a.mat[0] = to_mat(gate, y);
    a.mat[1] = to_mat(up, nullptr);
    run(a, s);
}
