/* W8A8 prefill GEMM through cuBLASLt's Hopper block scaling (what SGLang runs
 * for fp8_pb_wo checkpoints): y[M][N] = x[M][K] . W[N][K]^T with
 *
 *   W: FP8 E4M3 codes, one fp32 scale per 128x128 block (as loaded, g4_dmatrix);
 *   x: fp32, quantized here per token per 128-wide K group to E4M3 with
 *      s = amax / 448 (amax 0: s = 1), q = RNE(x / s) saturated to +-448;
 *   y: fp32, y[m][n] = sum_kb s_x[m][kb] s_w[n/128][kb] sum_{k in kb} q_x q_w
 *      (cuBLASLt accumulates in fp32 and applies the scales per 128-wide K block).
 *
 * cuBLASLt is column-major, so the row-major problem is posed as its transpose:
 *   A = W: col-major K x N (ld K), op T  -> m = N     scale mode BLK128x128_32F
 *   B = x: col-major K x M4 (ld K), op N -> n = M4    scale mode VEC128_32F
 *   D = y: col-major N x M4 (ld N) = row-major [M4][N], fp32
 * FP8 on Hopper needs this "TN" form. The scale layouts (cuBLAS docs, "128-element
 * 1D and 128x128 2D Block Scaling For FP8 Data Types" / "Scaling factors layouts";
 * the same strides that PyTorch's _scaled_mm checks for its DeepSeek recipe):
 *   - B's VEC128 scales are N-major (token index fastest): xs[kb * M4 + m];
 *   - A's BLK128x128 scales are K-major with the column stride rounded up to a
 *     multiple of 4: ws[nb * L4 + kb], L4 = roundup(ceil(K/128), 4). The checkpoint
 *     layout [ceil(N/128)][ceil(K/128)] is the same order with stride ceil(K/128), so
 *     it is used as it is when that is a multiple of 4 (K = 4096, 15360) and copied
 *     into a padded scratch (zeros in the pad) by the quantization kernel otherwise
 *     (K = 3840: 30 -> 32);
 *   - cuBLAS's m and n must be multiples of 4 and scale pointers 16-byte aligned:
 *     the tokens are padded to M4 = roundup(M, 4) (zero codes, scale 1). When
 *     M4 != M the GEMM writes a scratch [M4][N] whose first M rows are copied to y.
 * Only sm_90 has these scale modes (cuBLAS >= 12.9); on anything else, or for
 * shapes cuBLASLt refuses (no algorithm), the launchers return -1 and the caller
 * uses g4k_gemm. N and K must be multiples of 128 (every 12B matrix is): cuBLAS
 * only asks for N % 4 and 16-byte rows, but partial 128-blocks have not been
 * tried on a GPU, so they take the g4k_gemm path for now.
 *
 * Launch sequence per call: one quantization kernel (x -> codes + scales, plus the
 * padded weight-scale copies), one cublasLtMatmul per weight (up to 3 weights with
 * the same K share one quantization of x: q, k, v), then for GeGLU one small kernel
 * gelu(gate) * up (gate and up are separate allocations, so two GEMMs into
 * scratch), or for M % 4 != 0 one device-to-device copy per weight.
 *
 * Loading: libcublasLt.so.<major> is opened with dlopen on the first call, not
 * linked: linked, its start-up (static initializers of a 0.5 GB library) cost every
 * process ~1 s and ~200 MB RSS (measured on the dev VM), CLI and CPU tests included,
 * and a binary could not start where the library is missing. Missing library: -1
 * with the dlerror() text, and the caller uses g4k_gemm. -DG4_CUBLASLT_LINKED=1
 * binds the same entry points at link time instead (make CUBLASLT_DLOPEN=0).
 *
 * State (process-wide, one device, not thread-safe, like g4k_gemm's scratch): the
 * cuBLASLt handle, a 32 MiB workspace, scratch buffers that grow on demand, and a
 * plan per (M4, N, K): matmul descriptor, layouts and the heuristic's algorithm,
 * queried once. A call that would allocate or query the heuristic while its stream
 * is being captured returns -1 instead, so a call is graph-capturable once the same
 * shape (and no larger one of its buffers) has run outside capture.
 */
#include <cublasLt.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

#define W8A8_WORKSPACE (32u << 20) /* cuBLAS's recommendation for Hopper */
#define W8A8_PLANS 64              /* prefill lengths vary: least recently used plan is replaced */
#define W8A8_QUANT_THREADS 256
#define W8A8_MAX_MATS 3            /* q, k, v against one quantized x */

/* ---------------- CUDA kernels ---------------- */

struct quant_params {
    const float *x;          /* [M][K] */
    uint8_t *xq;             /* [M4][K] E4M3 codes, rows >= M zero */
    float *xs;               /* scale of (m, kb) at xs[m * xs_m + kb * xs_kb] */
    int xs_m, xs_kb;         /* 1, M4: token index fastest (cuBLASLt's VEC128 layout for B) */
    int M, M4, K, KB;
    int n_warps;             /* M4 * KB: one warp per (token, K group) */
    int quant_blocks;        /* blocks [0, quant_blocks) quantize, the rest copy weight scales */
    const float *wsrc[W8A8_MAX_MATS]; /* [NB][KB] checkpoint scales (NULL: nothing to copy) */
    float *wdst[W8A8_MAX_MATS];       /* [NB][L4], zeros for kb >= KB */
    int NB[W8A8_MAX_MATS], L4;
};

/* Quantize x per (token, 128-wide K group): warp w handles token w / KB, group
 * w % KB; lane l holds 4 consecutive values (written for K % 16 == 0, so that a
 * lane's 4 are all in range or all out; the launchers ask for K % 128 == 0). Extra blocks copy the weight scales into the padded
 * layout (tiny: <= a few thousand floats). */
__global__ void __launch_bounds__(W8A8_QUANT_THREADS) w8a8_quant(const quant_params p) {
    if ((int)blockIdx.x >= p.quant_blocks) {
        for (int which = 0; which < W8A8_MAX_MATS; which++) {
            if (!p.wsrc[which]) continue;
            for (int j = (blockIdx.x - p.quant_blocks) * blockDim.x + threadIdx.x; j < p.NB[which] * p.L4;
                 j += (gridDim.x - p.quant_blocks) * blockDim.x) {
                const int nb = j / p.L4, kb = j % p.L4;
                p.wdst[which][j] = kb < p.KB ? p.wsrc[which][(size_t)nb * p.KB + kb] : 0.0f;
            }
        }
        return;
    }
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / G4K_WARP, lane = threadIdx.x % G4K_WARP;
    if (warp >= p.n_warps) return;
    const int m = warp / p.KB, kb = warp % p.KB;
    const int k = kb * 128 + lane * 4;
    const bool in = m < p.M && k < p.K;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (in) v = *reinterpret_cast<const float4 *>(p.x + (size_t)m * p.K + k);
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    /* IEEE division (not a reciprocal) so that the host reference can repeat it bit for bit */
    const float s = amax > 0.0f ? __fdiv_rn(amax, 448.0f) : 1.0f;
    if (k < p.K) {
        const uint32_t q = (uint32_t)g4k_f32_to_fp8(__fdiv_rn(v.x, s)) | (uint32_t)g4k_f32_to_fp8(__fdiv_rn(v.y, s)) << 8 |
                           (uint32_t)g4k_f32_to_fp8(__fdiv_rn(v.z, s)) << 16 |
                           (uint32_t)g4k_f32_to_fp8(__fdiv_rn(v.w, s)) << 24;
        *reinterpret_cast<uint32_t *>(p.xq + (size_t)m * p.K + k) = q;
    }
    if (lane == 0) p.xs[(size_t)m * p.xs_m + (size_t)kb * p.xs_kb] = s;
}

/* y[m][n] = gelu_tanh(g[m][n]) * u[m][n] for m < M (g, u, y: ld N, N % 4 == 0). */
__global__ void w8a8_geglu(float *y, const float *g, const float *u, size_t n4) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4; i += (size_t)gridDim.x * blockDim.x) {
        const float4 a = reinterpret_cast<const float4 *>(g)[i], b = reinterpret_cast<const float4 *>(u)[i];
        reinterpret_cast<float4 *>(y)[i] =
            make_float4(g4k_gelu_tanh(a.x) * b.x, g4k_gelu_tanh(a.y) * b.y, g4k_gelu_tanh(a.z) * b.z,
                        g4k_gelu_tanh(a.w) * b.w);
    }
}

/* ---------------- host side ---------------- */

/* The cuBLASLt entry points used here, called through `lt`. */
#define W8A8_LT_FUNCS(X)                                                                                      \
    X(cublasLtGetVersion)                                                                                     \
    X(cublasLtGetStatusName)                                                                                  \
    X(cublasLtGetStatusString)                                                                                \
    X(cublasLtCreate)                                                                                         \
    X(cublasLtDestroy)                                                                                        \
    X(cublasLtMatmulDescCreate)                                                                               \
    X(cublasLtMatmulDescDestroy)                                                                              \
    X(cublasLtMatmulDescSetAttribute)                                                                         \
    X(cublasLtMatrixLayoutCreate)                                                                             \
    X(cublasLtMatrixLayoutDestroy)                                                                            \
    X(cublasLtMatmulPreferenceCreate)                                                                         \
    X(cublasLtMatmulPreferenceDestroy)                                                                        \
    X(cublasLtMatmulPreferenceSetAttribute)                                                                   \
    X(cublasLtMatmulAlgoGetHeuristic)                                                                         \
    X(cublasLtMatmul)

#define X(fn) typedef decltype(&fn) fn##_fn;
W8A8_LT_FUNCS(X)
#undef X
static struct {
    int loaded; /* 0: not tried, 1: ready, -1: failed (not tried again) */
    char err[400];
#define X(fn) fn##_fn fn;
    W8A8_LT_FUNCS(X)
#undef X
} lt;

#define W8A8_STR2(x) #x
#define W8A8_STR(x) W8A8_STR2(x)
#ifndef W8A8_LT_SONAME
#define W8A8_LT_SONAME "libcublasLt.so." W8A8_STR(CUBLAS_VER_MAJOR)
#endif

/* Fills `lt` (once; a failure is remembered with its reason in lt.err). */
static int lt_load(void) {
    if (lt.loaded) return lt.loaded == 1 ? 0 : -1;
    lt.loaded = -1;
#if defined(G4_CUBLASLT_LINKED) && G4_CUBLASLT_LINKED
#define X(fn) lt.fn = &fn;
    W8A8_LT_FUNCS(X)
#undef X
#else
    /* the executable's RUNPATH ($(CUDA_HOME)/lib64, see the Makefile) and LD_LIBRARY_PATH are searched */
    void *h = dlopen(W8A8_LT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("/usr/local/cuda/lib64/" W8A8_LT_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(lt.err, sizeof lt.err, "g4k_gemm_w8a8: cannot load %s: %s", W8A8_LT_SONAME, e ? e : "?");
        return -1;
    }
#define X(fn)                                                                                                 \
    lt.fn = reinterpret_cast<fn##_fn>(dlsym(h, #fn));                                                         \
    if (!lt.fn) {                                                                                             \
        snprintf(lt.err, sizeof lt.err, "g4k_gemm_w8a8: %s has no %s", W8A8_LT_SONAME, #fn);                  \
        return -1;                                                                                            \
    }
    W8A8_LT_FUNCS(X)
#undef X
#endif
    lt.loaded = 1;
    return 0;
}

struct w8a8_plan {
    int M4, N, K;
    int ok;                  /* 0: cuBLASLt has no algorithm for it (remembered, not asked again) */
    unsigned long long used; /* LRU stamp; 0: empty slot */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    char why[256];           /* !ok: what failed */
};

struct w8a8_buf {
    void *p;
    size_t cap;
};

static struct {
    int state;               /* 0: not initialized, 1: ready, -1: unsupported here */
    cublasLtHandle_t lt;
    void *workspace;
    w8a8_buf xq, xs, wsc[W8A8_MAX_MATS], out[W8A8_MAX_MATS];
    w8a8_plan plans[W8A8_PLANS];
    unsigned long long clock;
    char err[512];
} g;

static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.err, sizeof g.err, fmt, ap);
    va_end(ap);
    return code;
}

#define LT_TRY(call)                                                                                          \
    do {                                                                                                      \
        cublasStatus_t st_ = (call);                                                                          \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                                     \
            return fail(-2, "g4k_gemm_w8a8: %s: %s (%s)", #call, lt.cublasLtGetStatusName(st_),                  \
                        lt.cublasLtGetStatusString(st_));                                                        \
    } while (0)

#define CUDA_TRY(call)                                                                                        \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) return fail(-2, "g4k_gemm_w8a8: %s: %s", #call, cudaGetErrorString(e_));     \
    } while (0)

extern "C" const char *g4k_gemm_w8a8_error(void) { return g.err; }

static void plan_destroy(w8a8_plan *pl) {
    if (pl->desc) lt.cublasLtMatmulDescDestroy(pl->desc);
    if (pl->a) lt.cublasLtMatrixLayoutDestroy(pl->a);
    if (pl->b) lt.cublasLtMatrixLayoutDestroy(pl->b);
    if (pl->d) lt.cublasLtMatrixLayoutDestroy(pl->d);
    memset(pl, 0, sizeof *pl);
}

extern "C" void g4k_gemm_w8a8_release(void) {
    if (g.state == 1) cudaDeviceSynchronize();
    for (int i = 0; i < W8A8_PLANS; i++) plan_destroy(&g.plans[i]);
    w8a8_buf *bufs[] = {&g.xq, &g.xs, &g.wsc[0], &g.wsc[1], &g.wsc[2], &g.out[0], &g.out[1], &g.out[2]};
    for (w8a8_buf *b : bufs) {
        if (b->p) cudaFree(b->p);
        b->p = nullptr, b->cap = 0;
    }
    if (g.workspace) cudaFree(g.workspace);
    if (g.lt) lt.cublasLtDestroy(g.lt);
    g.workspace = nullptr, g.lt = nullptr;
    g.state = 0;
}

/* 0 when `s` is not being captured (so allocating and asking the heuristic are
 * fine); -1 with "<what> during graph capture"; -2 if CUDA cannot tell. */
static int not_capturing(cudaStream_t s, const char *what) {
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    const cudaError_t e = cudaStreamIsCapturing(s, &cs);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return fail(-2, "g4k_gemm_w8a8: cudaStreamIsCapturing: %s", cudaGetErrorString(e));
    }
    return cs == cudaStreamCaptureStatusNone ? 0 : fail(-1, "g4k_gemm_w8a8: %s during graph capture", what);
}

/* Once per process: sm_90 and cuBLASLt >= 12.9, then the handle and workspace. */
static int init(cudaStream_t s) {
    if (g.state == 1) return 0;
    if (g.state == -1) return -1;
    if (lt_load()) {
        g.state = -1;
        return fail(-1, "%s", lt.err);
    }
    int r = not_capturing(s, "first call");
    if (r) return r;
    int dev = 0, major = 0, minor = 0;
    CUDA_TRY(cudaGetDevice(&dev));
    CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CUDA_TRY(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    const size_t ver = lt.cublasLtGetVersion();
    if (major != 9 || minor != 0) {
        g.state = -1;
        return fail(-1, "g4k_gemm_w8a8: cuBLASLt block-scaled FP8 needs sm_90, this GPU is sm_%d%d", major, minor);
    }
    if (ver < 120900) {
        g.state = -1;
        return fail(-1, "g4k_gemm_w8a8: cuBLASLt %zu has no 128x128 block scaling (needs >= 12.9)", ver);
    }
    LT_TRY(lt.cublasLtCreate(&g.lt));
    cudaError_t e = cudaMalloc(&g.workspace, W8A8_WORKSPACE);
    if (e != cudaSuccess) {
        lt.cublasLtDestroy(g.lt);
        g.lt = nullptr, g.workspace = nullptr;
        return fail(-2, "g4k_gemm_w8a8: workspace of %u bytes: %s", W8A8_WORKSPACE, cudaGetErrorString(e));
    }
    g.state = 1;
    return 0;
}

/* Grow a scratch buffer (never during capture; the stream is synchronized first
 * so that no queued work still uses the old one). */
static int ensure(w8a8_buf *b, size_t bytes, cudaStream_t s) {
    if (bytes <= b->cap) return 0;
    char what[64];
    snprintf(what, sizeof what, "scratch growth to %zu bytes", bytes);
    int r = not_capturing(s, what);
    if (r) return r;
    CUDA_TRY(cudaStreamSynchronize(s));
    if (b->p) CUDA_TRY(cudaFree(b->p));
    b->p = nullptr, b->cap = 0;
    CUDA_TRY(cudaMalloc(&b->p, bytes));
    b->cap = bytes;
    return 0;
}

static int set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *v, size_t n) {
    LT_TRY(lt.cublasLtMatmulDescSetAttribute(d, a, v, n));
    return 0;
}

/* The plan for (M4, N, K), created (and the heuristic asked) on first use. A
 * shape cuBLASLt refuses is remembered (with its reason) and not asked again. */
static int get_plan(int M4, int N, int K, const void *wscale, const void *xscale, cudaStream_t s, w8a8_plan **out) {
    w8a8_plan *slot = nullptr;
    for (int i = 0; i < W8A8_PLANS; i++) {
        w8a8_plan *pl = &g.plans[i];
        if (pl->used && pl->M4 == M4 && pl->N == N && pl->K == K) {
            pl->used = ++g.clock;
            if (!pl->ok)
                return fail(-1, "g4k_gemm_w8a8: no cuBLASLt algorithm for M4=%d N=%d K=%d (%s)", M4, N, K, pl->why);
            *out = pl;
            return 0;
        }
        if (!slot || pl->used < slot->used) slot = pl;
    }
    char what[80];
    snprintf(what, sizeof what, "first call for M4=%d N=%d K=%d", M4, N, K);
    int r = not_capturing(s, what);
    if (r) return r;
    w8a8_plan *pl = slot;
    plan_destroy(pl);
    pl->M4 = M4, pl->N = N, pl->K = K;
    pl->used = ++g.clock;

    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const int32_t amode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, bmode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
    const uint64_t ws = W8A8_WORKSPACE;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasLtMatmulHeuristicResult_t res[8];
    int n_res = 0;
    const char *step = "cublasLtMatmulDescCreate";
    cublasStatus_t st = lt.cublasLtMatmulDescCreate(&pl->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
#define STEP(call)                                                                                            \
    if (st == CUBLAS_STATUS_SUCCESS) st = (step = #call, call)
    STEP(lt.cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    STEP(lt.cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    STEP(lt.cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &amode, sizeof amode));
    STEP(lt.cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bmode, sizeof bmode));
    STEP(lt.cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wscale, sizeof wscale));
    STEP(lt.cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xscale, sizeof xscale));
    STEP(lt.cublasLtMatrixLayoutCreate(&pl->a, CUDA_R_8F_E4M3, K, N, K));
    STEP(lt.cublasLtMatrixLayoutCreate(&pl->b, CUDA_R_8F_E4M3, K, M4, K));
    STEP(lt.cublasLtMatrixLayoutCreate(&pl->d, CUDA_R_32F, N, M4, N));
    STEP(lt.cublasLtMatmulPreferenceCreate(&pref));
    STEP(lt.cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    STEP(lt.cublasLtMatmulAlgoGetHeuristic(g.lt, pl->desc, pl->a, pl->b, pl->d, pl->d, pref, 8, res, &n_res));
#undef STEP
    if (pref) lt.cublasLtMatmulPreferenceDestroy(pref);
    int pick = -1;
    for (int i = 0; st == CUBLAS_STATUS_SUCCESS && i < n_res && pick < 0; i++)
        if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= W8A8_WORKSPACE) pick = i;
    if (pick < 0) {
        if (st != CUBLAS_STATUS_SUCCESS)
            snprintf(pl->why, sizeof pl->why, "%s: %s", step, lt.cublasLtGetStatusName(st));
        else
            snprintf(pl->why, sizeof pl->why, "no usable heuristic result among %d", n_res);
        pl->ok = 0;
        return fail(st == CUBLAS_STATUS_SUCCESS || st == CUBLAS_STATUS_NOT_SUPPORTED ? -1 : -2,
                    "g4k_gemm_w8a8: no cuBLASLt algorithm for M4=%d N=%d K=%d (%s)", M4, N, K, pl->why);
    }
    pl->algo = res[pick].algo;
    pl->ok = 1;
    *out = pl;
    return 0;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* n_w weights (same K) against one quantized x: y[i] = x w[i]^T, or with
 * geglu (n_w == 2, w = {gate, up}) y[0] = gelu(x gate^T) * (x up^T). */
static int w8a8_run(const g4_dmatrix *const *w, int n_w, float *const *y, bool geglu, const float *x, int M,
                    cudaStream_t s) {
    if (M <= 0) return 0;
    if (n_w < 1 || n_w > W8A8_MAX_MATS) return fail(-1, "g4k_gemm_w8a8: %d matrices (1 to %d)", n_w, W8A8_MAX_MATS);
    const int K = w[0]->cols;
    for (int i = 0; i < n_w; i++) {
        if (!w[i]->fp8 || !w[i]->scales) return fail(-1, "g4k_gemm_w8a8: weight %d is not FP8 with block scales", i);
        if (w[i]->tiled) return fail(-1, "g4k_gemm_w8a8: weight %d is tiled (cuBLASLt reads row-major codes)", i);
        if (w[i]->cols != K) return fail(-1, "g4k_gemm_w8a8: weights differ in columns");
        if (geglu && w[i]->rows != w[0]->rows) return fail(-1, "g4k_gemm_w8a8: gate and up differ in shape");
        if (w[i]->rows <= 0 || w[i]->rows % 128 != 0)
            return fail(-1, "g4k_gemm_w8a8: N=%d unsupported (needs N %% 128 == 0)", w[i]->rows);
        if (!aligned16(w[i]->data)) return fail(-1, "g4k_gemm_w8a8: weight %d codes not 16-byte aligned", i);
    }
    if (K <= 0 || K % 128 != 0) return fail(-1, "g4k_gemm_w8a8: K=%d unsupported (needs K %% 128 == 0)", K);
    if (!aligned16(x) || (geglu && !aligned16(y[0])))
        return fail(-1, "g4k_gemm_w8a8: x or the GeGLU output not 16-byte aligned");
    int r = init(s);
    if (r) return r;

    const int M4 = (M + 3) & ~3, KB = (K + 127) / 128, L4 = (KB + 3) & ~3;
    /* scratch: codes, activation scales, padded weight scales (when needed), GEMM outputs (when needed),
     * all grown before anything is enqueued */
    if ((r = ensure(&g.xq, (size_t)M4 * K, s)) || (r = ensure(&g.xs, (size_t)KB * M4 * sizeof(float), s))) return r;
    const float *wscale[W8A8_MAX_MATS] = {};
    float *dout[W8A8_MAX_MATS] = {};
    w8a8_plan *plan[W8A8_MAX_MATS] = {};
    quant_params qp = {};
    int copy_threads = 0;
    for (int i = 0; i < n_w; i++) {
        const int N = w[i]->rows, NB = (N + 127) / 128;
        if (L4 == KB && aligned16(w[i]->scales)) {
            wscale[i] = w[i]->scales;
        } else {
            if ((r = ensure(&g.wsc[i], (size_t)NB * L4 * sizeof(float), s))) return r;
            qp.wsrc[i] = w[i]->scales;
            qp.wdst[i] = static_cast<float *>(g.wsc[i].p);
            qp.NB[i] = NB;
            wscale[i] = qp.wdst[i];
            copy_threads = copy_threads > NB * L4 ? copy_threads : NB * L4;
        }
        if (!geglu && M4 == M && aligned16(y[i])) {
            dout[i] = y[i];
        } else {
            if ((r = ensure(&g.out[i], (size_t)M4 * N * sizeof(float), s))) return r;
            dout[i] = static_cast<float *>(g.out[i].p);
        }
        if ((r = get_plan(M4, N, K, wscale[i], g.xs.p, s, &plan[i]))) return r;
    }

    /* x -> codes + scales (and the weight-scale copies) */
    qp.x = x, qp.xq = static_cast<uint8_t *>(g.xq.p), qp.xs = static_cast<float *>(g.xs.p);
    qp.xs_m = 1, qp.xs_kb = M4;
    qp.M = M, qp.M4 = M4, qp.K = K, qp.KB = KB, qp.L4 = L4;
    qp.n_warps = M4 * KB;
    const int warps_per_block = W8A8_QUANT_THREADS / G4K_WARP;
    qp.quant_blocks = (qp.n_warps + warps_per_block - 1) / warps_per_block;
    const int copy_blocks = (copy_threads + W8A8_QUANT_THREADS - 1) / W8A8_QUANT_THREADS;
    w8a8_quant<<<qp.quant_blocks + copy_blocks, W8A8_QUANT_THREADS, 0, s>>>(qp);
    CUDA_TRY(cudaGetLastError());

    const float alpha = 1.0f, beta = 0.0f;
    const void *xscale = g.xs.p;
    for (int i = 0; i < n_w; i++) {
        w8a8_plan *pl = plan[i];
        if ((r = set_attr(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &wscale[i], sizeof wscale[i])) ||
            (r = set_attr(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xscale, sizeof xscale)))
            return r;
        LT_TRY(lt.cublasLtMatmul(g.lt, pl->desc, &alpha, w[i]->data, pl->a, g.xq.p, pl->b, &beta, dout[i], pl->d,
                              dout[i], pl->d, &pl->algo, g.workspace, W8A8_WORKSPACE, s));
    }
    if (geglu) {
        const size_t n4 = (size_t)M * w[0]->rows / 4;
        const int blocks = (int)((n4 + 255) / 256 < 4096 ? (n4 + 255) / 256 : 4096);
        w8a8_geglu<<<blocks, 256, 0, s>>>(y[0], dout[0], dout[1], n4);
        CUDA_TRY(cudaGetLastError());
    } else {
        /* padded tokens: the first M rows of the row-major [M4][N] result are y */
        for (int i = 0; i < n_w; i++)
            if (dout[i] != y[i])
                CUDA_TRY(cudaMemcpyAsync(y[i], dout[i], (size_t)M * w[i]->rows * sizeof(float),
                                         cudaMemcpyDeviceToDevice, s));
    }
    return 0;
}

extern "C" int g4k_gemm_w8a8(const g4_dmatrix *w, float *y, const float *x, int M, g4_stream s) {
    const g4_dmatrix *ws[1] = {w};
    float *ys[1] = {y};
    return w8a8_run(ws, 1, ys, false, x, M, reinterpret_cast<cudaStream_t>(s));
}

extern "C" int g4k_gemm_w8a8_multi(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M,
                                   g4_stream s) {
    const g4_dmatrix *ws[W8A8_MAX_MATS];
    for (int i = 0; i < n_mats && i < W8A8_MAX_MATS; i++) ws[i] = &w[i];
    return w8a8_run(ws, n_mats, y, false, x, M, reinterpret_cast<cudaStream_t>(s));
}

extern "C" int g4k_gemm_w8a8_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                                   g4_stream s) {
    const g4_dmatrix *ws[2] = {gate, up};
    float *ys[1] = {y};
    return w8a8_run(ws, 2, ys, true, x, M, reinterpret_cast<cudaStream_t>(s));
}
