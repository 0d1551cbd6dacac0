/* Greedy choice on the GPU: the first maximum of each logits row, two ids
 * excluded (<image|>, <audio|>; model.md §3.4). CPU reference: g4_argmax. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"

__global__ void argmax_kernel(int32_t *tokens, const float *logits, int vocab, int sup0, int sup1) {
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    g4k_wait_inputs();
    g4k_allow_next();
    const float *row = logits + (size_t)blockIdx.x * vocab;
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float x = row[i];
        if (i == sup0 || i == sup1) continue;
        if (x > v || (x == v && i < idx)) v = x, idx = i;
    }
    for (int o = 16; o > 0; o >>= 1) { /* (value, lowest index) reduction */
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > v || (ov == v && oi < idx)) v = ov, idx = oi;
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) best_v[warp] = v, best_i[warp] = idx;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)blockDim.x / 32; w++)
            if (best_v[w] > v || (best_v[w] == v && best_i[w] < idx)) v = best_v[w], idx = best_i[w];
        tokens[blockIdx.x] = idx;
    }
}

extern "C" void g4k_argmax(int32_t *tokens, const float *logits, int M, int vocab, int sup0, int sup1, g4_stream s) {
    g4k_launch(argmax_kernel, M, 1024, 0, s, tokens, logits, vocab, sup0, sup1);
}
