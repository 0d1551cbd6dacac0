/* The mbarriers that count the bytes of Hopper's asynchronous copies into
 * shared memory (the prefill GEMM's tensor-map loads, gemm_wgmma.cu). */
#ifndef G4_CUDA_ASYNC_COPY_CUH
#define G4_CUDA_ASYNC_COPY_CUH

#include <stdint.h>

#include "cuda/common.cuh"

__device__ __forceinline__ uint32_t g4k_smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* Makes initialized barriers visible to the async proxy (the copies that complete them). */
__device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ bool mbar_try(uint32_t bar, uint32_t parity) {
    uint32_t ok;
    asm volatile("{\n\t.reg .pred P1;\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 P1, [%1], %2;\n\t"
                 "selp.b32 %0, 1, 0, P1;\n}\n"
                 : "=r"(ok)
                 : "r"(bar), "r"(parity)
                 : "memory");
    return ok != 0;
}
/* Waits for the phase of `parity` to complete. A wait of more than 4 s means a broken
 * pipeline (a bug, not a slow GPU): trap (cudaErrorLaunchFailure) rather than hang the process.
 * (No printf: a call inside the wgmma pipeline makes ptxas serialize the wgmmas, C7510.) */
__device__ __forceinline__ void mbar_wait_slow(uint32_t bar, uint32_t parity) {
    const uint64_t t0 = g4k_globaltimer();
    for (uint32_t n = 1;; n++) {
        if (mbar_try(bar, parity)) return;
        if ((n & 1023) == 0 && g4k_globaltimer() - t0 > 4000000000ull) __trap();
    }
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    if (!mbar_try(bar, parity)) mbar_wait_slow(bar, parity);
}
#endif
