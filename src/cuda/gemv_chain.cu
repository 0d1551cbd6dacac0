/* A decode layer's projections after attention as one persistent launch:
 * o_proj, the residual step, gate/up + GeGLU, down_proj, the residual step
 * and the next layer's q/k/v (g4k_gemv_chain, kernels.h). The same per-tile
 * arithmetic as the one-launch-per-projection kernel (gemv_tc.cu, shared
 * through gemv_tc.cuh), FP8 tiled weights only.
 *
 * Why: one launch per projection leaves HBM idle at every kernel boundary.
 * A kernel's blocks fill the register file, so the next kernel's blocks only
 * become resident, and only start on their weights, as this one's retire; the
 * one-block residual norms in between add their own ramp. Knocking the norm
 * launches out of the decode graph saved 0.6 ms a step, and putting their
 * work into a GEMV launch cost as much again (perf log, session 4). Here the
 * grid stays resident: every block issues its first weight loads of the next
 * projection before it waits at a grid-wide barrier for the activations, and
 * computes the residual step itself from L2 (each block the same, so no
 * second barrier), block 0 writing h.
 *
 * The grid is every block that fits at once (occupancy, at most 2 per SM),
 * and the barriers need all of them resident: nothing else may run on the GPU
 * concurrently with this kernel (the forward pass runs on one stream). */
#include <stdlib.h>
#include <string.h>

#include "cuda/gemv_tc.cuh"

struct chain_op_dev {
    tc_mats w;
    int geglu;
    int n_tiles;   /* 16-row tiles over all matrices (GeGLU: over gate) */
    int kpw;       /* warps per tile */
    int xs_stride; /* 16-bit elements per shared x row */
    const float *x;
    const float *proj, *h_in, *w_post, *w_next; /* the residual step, when proj != NULL */
    float *h_out;
    float scalar;
};

struct chain_args {
    chain_op_dev op[G4K_CHAIN_MAX_OPS];
    int n_ops, M;
    float eps;
    unsigned *sync;      /* [2]: arrivals, generation */
    unsigned red_offset; /* bytes into shared memory: the split-k reduction area */
    unsigned tmp_offset; /* and the staging area of x (the residual step's rows) */
    int tmp4;            /* its size in float4s */
    int poll_ns;         /* EXPERIMENT: sleep between barrier polls */
};

/* What the tile loop reads of an op, copied to shared memory per op: read from
 * the kernel parameters at a runtime index, the compiler would keep every
 * matrix pointer in registers, which the loads in flight need (it spilled). */
struct chain_op_smem {
    tc_mats w;
    int geglu, n_tiles, kpw;
};

__device__ __forceinline__ void chain_copy_op(chain_op_smem *dst, const chain_op_dev &op) {
    dst->w = op.w, dst->geglu = op.geglu, dst->n_tiles = op.n_tiles, dst->kpw = op.kpw;
}

/* A warp's part in one op: which tile of its block's group, which k-steps. */
struct chain_role {
    int tpb, tib, n_groups, s_begin, s_end;
};

__device__ __forceinline__ chain_role role_of(const chain_op_smem &op, int warp) {
    chain_role r;
    const int part = warp % op.kpw, n_steps = op.w.cols / 64;
    r.tpb = TC_WARPS / op.kpw, r.tib = warp / op.kpw;
    r.n_groups = (op.n_tiles + r.tpb - 1) / r.tpb;
    r.s_begin = part * n_steps / op.kpw, r.s_end = (part + 1) * n_steps / op.kpw;
    return r;
}

/* The weight loads in flight: P = 8 / NA k-steps of NA tiles, two 16-byte
 * halves each, always 16 registers of uint4 whatever the op. */
template <int NA>
__device__ __forceinline__ void chain_load(uint4 (&buf)[16], const tc_job &j, int slot, int s) {
#pragma unroll
    for (int i = 0; i < NA; i++) {
        buf[(slot * NA + i) * 2] = g4k_ld_stream(j.lo[i] + (size_t)s * 1024);
        buf[(slot * NA + i) * 2 + 1] = g4k_ld_stream(j.hi[i] + (size_t)s * 1024);
    }
}

template <int NA>
__device__ __forceinline__ void chain_prologue(uint4 (&buf)[16], const tc_job &j, const chain_role &r) {
#pragma unroll
    for (int u = 0; u < 8 / NA; u++)
        if (r.s_begin + u < r.s_end) chain_load<NA>(buf, j, u, r.s_begin + u);
}

/* Issues this warp's first loads of an op (its first tile, if it has one).
 * The tile's job is found again when the op starts: holding it across the
 * barrier and the staging of x would take 16 registers that are not there. */
template <int NA>
__device__ __forceinline__ void chain_first_na(const chain_op_smem &op, uint4 (&buf)[16], int warp, int g, int t) {
    const chain_role r = role_of(op, warp);
    const int tile = blockIdx.x * r.tpb + r.tib;
    if ((int)blockIdx.x < r.n_groups && tile < op.n_tiles) chain_prologue<NA>(buf, tc_find(op.w, tile, g, t, true, NA), r);
}

__device__ __forceinline__ void chain_first(const chain_op_smem &op, uint4 (&buf)[16], int warp, int g, int t) {
    if (op.geglu) chain_first_na<2>(op, buf, warp, g, t);
    else chain_first_na<1>(op, buf, warp, g, t);
}

__device__ __forceinline__ unsigned ld_acquire(const unsigned *p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* Every block of the grid arrives before any leaves; what a block wrote before
 * is visible (through L2) to every block after. Self-resetting: the last to
 * arrive zeroes the count and then bumps the generation the others wait on. */
__device__ __forceinline__ void chain_barrier(unsigned *sync, int poll_ns) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned gen = ld_acquire(sync + 1);
        __threadfence();
        if (atomicAdd(sync, 1u) == gridDim.x - 1) {
            atomicExch(sync, 0u);
            __threadfence();
            asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(sync + 1), "r"(gen + 1) : "memory");
        } else {
            while (ld_acquire(sync + 1) == gen) {
                if (poll_ns) __nanosleep(poll_ns);
            }
        }
    }
    __syncthreads();
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}

/* x (fp32, [M][cols], written by another block or kernel) -> the shared x
 * parts, through `tmp` (tmp4 float4s) by asynchronous copies from L2: staging
 * through registers, as the one-launch kernel does, needs registers that the
 * loads in flight hold here (it spilled). */
__device__ void chain_stage_x(const float *x, int M, int cols, int xs_stride, uint16_t *xs, float4 *tmp, int tmp4) {
    const int quads = M * cols / 4;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    for (int base = 0; base < quads; base += tmp4) {
        const int n = quads - base < tmp4 ? quads - base : tmp4;
        for (int i = threadIdx.x; i < n; i += blockDim.x) cp_async16(tmp + i, x4 + base + i);
        asm volatile("cp.async.wait_all;" ::: "memory");
        __syncthreads();
        for (int i = threadIdx.x; i < n; i += blockDim.x) tc_store_x<true>(cols, xs_stride, xs, base + i, tmp[i]);
        __syncthreads();
    }
}

/* x = rms(h_out; w_next) with h_out = (h_in + rms(proj; w_post)) * scalar,
 * per token, into the shared x parts; block 0 also writes h_out. The same
 * formulas as residual_norm_vec (norm.cu). proj and h_in come through L2
 * (cp.async.cg): other blocks wrote proj, and L1 is not coherent. */
__device__ void chain_residual(const chain_args &a, const chain_op_dev &op, uint16_t *xs, float *tmp, float *red32) {
    const int n = op.w.cols, n4 = n / 4, M = a.M;
    float4 *ty = reinterpret_cast<float4 *>(tmp), *th = ty + (size_t)M * n4;
    for (int i = threadIdx.x; i < M * n4; i += blockDim.x) {
        cp_async16(ty + i, reinterpret_cast<const float4 *>(op.proj) + i);
        cp_async16(th + i, reinterpret_cast<const float4 *>(op.h_in) + i);
    }
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
    const float4 *wp = reinterpret_cast<const float4 *>(op.w_post), *wn = reinterpret_cast<const float4 *>(op.w_next);
    for (int m = 0; m < M; m++) {
        float4 *y = ty + (size_t)m * n4, *h = th + (size_t)m * n4;
        float ss = 0.0f;
        for (int i = threadIdx.x; i < n4; i += blockDim.x)
            ss += y[i].x * y[i].x + y[i].y * y[i].y + y[i].z * y[i].z + y[i].w * y[i].w;
        const float inv = 1.0f / sqrtf(g4k_block_sum(ss, red32) / n + a.eps);
        float ss2 = 0.0f;
        for (int i = threadIdx.x; i < n4; i += blockDim.x) {
            const float4 w = __ldg(wp + i), yv = y[i];
            float4 hv = h[i];
            hv.x = (hv.x + yv.x * inv * w.x) * op.scalar;
            hv.y = (hv.y + yv.y * inv * w.y) * op.scalar;
            hv.z = (hv.z + yv.z * inv * w.z) * op.scalar;
            hv.w = (hv.w + yv.w * inv * w.w) * op.scalar;
            h[i] = hv;
            ss2 += hv.x * hv.x + hv.y * hv.y + hv.z * hv.z + hv.w * hv.w;
        }
        const float inv2 = 1.0f / sqrtf(g4k_block_sum(ss2, red32) / n + a.eps);
        for (int i = threadIdx.x; i < n4; i += blockDim.x) { /* the same i as above: this thread's own h[i] */
            const float4 w = __ldg(wn + i), hv = h[i];
            tc_store_x<true>(n, op.xs_stride, xs, m * n4 + i,
                             make_float4(hv.x * inv2 * w.x, hv.y * inv2 * w.y, hv.z * inv2 * w.z, hv.w * inv2 * w.w));
            if (blockIdx.x == 0) reinterpret_cast<float4 *>(op.h_out)[(size_t)m * n4 + i] = hv;
        }
    }
}

/* Op k's groups of tiles for this block, as gemv_tc_kernel runs them; the
 * loads of the next tile (or of the next op's first tile) go out before this
 * one's outputs are written. On entry buf holds this warp's first loads of
 * op k (chain_first). */
template <int NA>
__device__ __forceinline__ void chain_groups(const chain_args &a, int k, const chain_op_smem *s_op, uint4 (&buf)[16],
                                             const uint16_t *xs, float *red, int warp, int g, int t) {
    constexpr int P = 8 / NA;
    const chain_op_smem &op = s_op[k & 1], &next = s_op[(k + 1) & 1];
    const int xs_stride = op.w.cols + 8;
    const chain_role r = role_of(op, warp);
    const int M = a.M, xrow = g < 2 * M ? g : -1;
    if ((int)blockIdx.x >= r.n_groups) { /* no tile here: start on the next op's weights */
        if (k + 1 < a.n_ops) chain_first(next, buf, warp, g, t);
        return;
    }
    const int first_tile = blockIdx.x * r.tpb + r.tib;
    tc_job job = tc_find(op.w, first_tile < op.n_tiles ? first_tile : 0, g, t, true, NA);
    for (int group = blockIdx.x; group < r.n_groups; group += gridDim.x) {
        const int tile = group * r.tpb + r.tib;
        float acc[NA][4] = {};
        if (tile < op.n_tiles) {
            for (int s0 = r.s_begin; s0 < r.s_end; s0 += P) {
#pragma unroll
                for (int u = 0; u < P; u++) {
                    const int s = s0 + u;
                    if (s >= r.s_end) break;
                    uint4 xb[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
                    if (xrow >= 0) {
                        const uint4 *p = reinterpret_cast<const uint4 *>(xs + (size_t)xrow * xs_stride + s * 64 + 16 * t);
                        xb[0] = p[0], xb[1] = p[1];
                    }
#pragma unroll
                    for (int i = 0; i < NA; i++)
                        tc_step<true>(acc[i], buf[(u * NA + i) * 2], buf[(u * NA + i) * 2 + 1], xb, __ldg(job.sc[i] + s / 2));
                    if (s + P < r.s_end) chain_load<NA>(buf, job, u, s + P);
                }
            }
        }
        /* lane (g, t) holds rows g and g + 8 of token t */
        float v[NA][2];
#pragma unroll
        for (int i = 0; i < NA; i++) v[i][0] = acc[i][0] + acc[i][1], v[i][1] = acc[i][2] + acc[i][3];
        const bool holds = t < M;
        const tc_job cur = job;
        const int next_group = group + gridDim.x, next_tile = next_group * r.tpb + r.tib;
        if (next_group < r.n_groups) {
            if (next_tile < op.n_tiles) {
                job = tc_find(op.w, next_tile, g, t, true, NA);
                chain_prologue<NA>(buf, job, r);
            }
        } else if (k + 1 < a.n_ops) {
            chain_first(next, buf, warp, g, t);
        }
        const int mode = NA == 2 ? G4K_TC_GEGLU : G4K_TC_PLAIN;
        if (op.kpw == 1) {
            if (tile < op.n_tiles && holds)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    cur.y[(size_t)t * cur.rows + cur.row + g + 8 * h] = tc_epilogue(v[0][h], v[NA - 1][h], mode, 0.0f);
            continue;
        }
        if (holds)
#pragma unroll
            for (int i = 0; i < NA; i++)
#pragma unroll
                for (int h = 0; h < 2; h++) red[((warp * NA + i) * 16 + g + 8 * h) * M + t] = v[i][h];
        __syncthreads();
        for (int o = threadIdx.x; o < r.tpb * 16 * M; o += blockDim.x) {
            const int ot = o / (16 * M), row = (o / M) % 16, m = o % M, otile = group * r.tpb + ot;
            if (otile >= op.n_tiles) continue;
            float sum[NA] = {};
            for (int p = 0; p < op.kpw; p++)
#pragma unroll
                for (int i = 0; i < NA; i++) sum[i] += red[(((ot * op.kpw + p) * NA + i) * 16 + row) * M + m];
            const tc_job oj = tc_find(op.w, otile, 0, 0, true, 0);
            oj.y[(size_t)m * oj.rows + oj.row + row] = tc_epilogue(sum[0], sum[NA - 1], mode, 0.0f);
        }
        __syncthreads();
    }
}

__global__ void __launch_bounds__(32 * TC_WARPS, 2) gemv_chain_kernel(const __grid_constant__ chain_args a) {
    extern __shared__ uint4 smem4[];
    __shared__ float red32[32];
    uint16_t *xs = reinterpret_cast<uint16_t *>(smem4);
    float *red = reinterpret_cast<float *>(reinterpret_cast<char *>(smem4) + a.red_offset);
    float *tmp = reinterpret_cast<float *>(reinterpret_cast<char *>(smem4) + a.tmp_offset);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;

    __shared__ chain_op_smem s_op[2]; /* op k in s_op[k & 1], op k + 1 in the other */
    if (threadIdx.x == 0) chain_copy_op(&s_op[0], a.op[0]);
    __syncthreads();
    uint4 buf[16];
    chain_first(s_op[0], buf, warp, g, t); /* weights do not depend on the previous kernel */
    g4k_wait_inputs();
    for (int k = 0; k < a.n_ops; k++) {
        const chain_op_dev &op = a.op[k];
        if (k > 0) chain_barrier(a.sync, a.poll_ns); /* op k's input is op k - 1's output, from every block */
        if (k == a.n_ops - 1) g4k_allow_next();
        if (threadIdx.x == 0 && k + 1 < a.n_ops) chain_copy_op(&s_op[(k + 1) & 1], a.op[k + 1]); /* read after a barrier below */
        if (op.proj) chain_residual(a, op, xs, tmp, red32);
        else chain_stage_x(op.x, a.M, op.w.cols, op.xs_stride, xs, reinterpret_cast<float4 *>(tmp), a.tmp4);
        __syncthreads();
        if (op.geglu) chain_groups<2>(a, k, s_op, buf, xs, red, warp, g, t);
        else chain_groups<1>(a, k, s_op, buf, xs, red, warp, g, t);
    }
}

static bool op_ok(const g4k_chain_op *op) {
    const g4_dmatrix &w0 = op->w[0];
    if (op->n_mats < 1 || op->n_mats > 3 || (op->geglu && op->n_mats != 2)) return false;
    if (!w0.fp8 || !w0.tiled || w0.cols % 128 || !w0.cols) return false;
    for (int i = 0; i < op->n_mats; i++) {
        const g4_dmatrix &w = op->w[i];
        if (!w.fp8 || !w.tiled || w.cols != w0.cols || w.rows % 16 || !w.rows || !w.data) return false;
        if (!op->y[i] && !(op->geglu && i == 1)) return false;
    }
    if (op->geglu && op->w[1].rows != w0.rows) return false;
    if (op->proj) return op->h_in && op->h_out && op->h_in != op->h_out && op->w_post && op->w_next;
    return op->x != nullptr;
}

extern "C" int g4k_gemv_chain(const g4k_chain_op *ops, int n_ops, int M, float eps, unsigned *sync, g4_stream s) {
    if (n_ops < 1 || n_ops > G4K_CHAIN_MAX_OPS || M < 1 || M > 4 || !sync) return 1;
    chain_args a = {};
    a.n_ops = n_ops, a.M = M, a.eps = eps, a.sync = sync;
    a.poll_ns = getenv("G4_CHAIN_POLL_NS") ? atoi(getenv("G4_CHAIN_POLL_NS")) : 0;
    size_t xs_bytes = 0, tmp_bytes = 0;
    for (int k = 0; k < n_ops; k++) {
        const g4k_chain_op *o = &ops[k];
        if (!op_ok(o)) return 1;
        chain_op_dev &d = a.op[k];
        d.w.n_mats = o->n_mats, d.w.cols = o->w[0].cols, d.w.tiled = 1;
        int rows = 0;
        for (int i = 0; i < o->n_mats; i++) {
            d.w.mat[i] = {static_cast<const uint8_t *>(o->w[i].data), o->w[i].scales, o->w[i].rows,
                          o->geglu && i == 1 ? nullptr : o->y[i]};
            rows += o->w[i].rows;
        }
        d.geglu = o->geglu;
        d.n_tiles = (o->geglu ? o->w[0].rows : rows) / 16;
        d.kpw = tc_pick_kpw(d.n_tiles, d.w.cols / 64, o->geglu ? 4 : 8);
        d.xs_stride = d.w.cols + 8;
        d.x = o->x, d.proj = o->proj, d.h_in = o->h_in, d.h_out = o->h_out;
        d.w_post = o->w_post, d.w_next = o->w_next, d.scalar = o->scalar;
        /* x's parts; the staging area: the residual step's two rows per token, or x in pieces of <= 32 KB */
        const size_t xb = (size_t)2 * M * d.xs_stride * 2, plain = (size_t)M * d.w.cols * 4;
        const size_t tb = o->proj ? 2 * plain : plain < 32768 ? plain : 32768;
        xs_bytes = xb > xs_bytes ? xb : xs_bytes;
        tmp_bytes = tb > tmp_bytes ? tb : tmp_bytes;
    }
    a.red_offset = (unsigned)((xs_bytes + 15) / 16 * 16);
    a.tmp_offset = a.red_offset + TC_WARPS * 2 * 16 * M * 4;
    a.tmp4 = (int)(tmp_bytes / 16);
    const size_t smem = a.tmp_offset + tmp_bytes;
    if (smem > 200 * 1024) return 1;
    static size_t smem_set = 48 * 1024;
    if (smem > smem_set) {
        if (cudaFuncSetAttribute(gemv_chain_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
            return 1;
        smem_set = smem;
    }
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_chain_kernel, 32 * TC_WARPS, smem) != cudaSuccess ||
        per_sm < 1)
        return 1;
    if (per_sm > 2) per_sm = 2;
    g4k_launch(gemv_chain_kernel, dim3(per_sm * g4k_sm_count()), dim3(32 * TC_WARPS), smem, s, a);
    return 0;
}
