/* Weight layouts on the GPU: row-major -> 16-row tiles (kernels.h,
 * g4_dmatrix), done once at upload. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"

/* One thread per 16 bytes of the destination: a lane's piece of one row. */
__global__ void retile_kernel(uint4 *dst, const uint8_t *src, int rows, int row_bytes) {
    const size_t pieces = (size_t)rows * row_bytes / 16;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < pieces; i += (size_t)gridDim.x * blockDim.x) {
        const size_t chunk = i / 64;
        const int in = (int)(i % 64), lane = in / 2, hi = in % 2, g = lane / 4, t = lane % 4;
        const int steps = row_bytes / 64, tile = (int)(chunk / steps), step = (int)(chunk % steps);
        const int r = tile * 16 + g + 8 * hi, b = step * 64 + t * 16;
        dst[i] = *reinterpret_cast<const uint4 *>(src + (size_t)r * row_bytes + b);
    }
}

extern "C" void g4k_retile(void *dst, const void *src, int rows, int row_bytes, g4_stream s) {
    retile_kernel<<<4 * g4k_sm_count(), 256, 0, s>>>(static_cast<uint4 *>(dst), static_cast<const uint8_t *>(src), rows,
                                                     row_bytes);
}
