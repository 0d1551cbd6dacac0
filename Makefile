# g4: one binary (build/g4), a static library of everything but the CLI
# (build/libg4.a), and one test executable per tests/test_*.c.
# CUDA objects are built when nvcc is present (CUDA=0 turns them off).

CC      ?= gcc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA    ?= $(if $(NVCC),1,0)
OPT     ?= -O2
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wno-unused-parameter \
           -Isrc -fopenmp -pthread -MMD -MP
# jansson and libevent are linked statically so build/g4 runs on other Linux hosts.
LDLIBS  += -Wl,-Bstatic -ljansson -levent -Wl,-Bdynamic -lm -fopenmp -pthread

BUILD   ?= build
# STATIC_OMP=1: link libgomp statically too (binaries carried to the GPU machine)
ifeq ($(STATIC_OMP),1)
LDLIBS  := $(filter-out -fopenmp,$(LDLIBS)) -Wl,-Bstatic -lgomp -Wl,-Bdynamic -ldl
endif
LIB_SRC := $(wildcard src/util/*.c src/model/*.c src/text/*.c src/engine/*.c \
                      src/cpu/*.c src/server/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TESTS   := $(filter-out tests/test_main.c,$(wildcard tests/test_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TESTS:tests/%.c=$(BUILD)/tests/%)

ifeq ($(CUDA),1)
CUDA_HOME ?= $(abspath $(dir $(NVCC))..)
CUDA_SRC := $(wildcard src/cuda/*.cu)
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/%.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/cuda/*.c))
NVFLAGS  ?= -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc -lineinfo
CFLAGS   += -DG4_HAVE_CUDA=1 -I$(CUDA_HOME)/include
# TRACE=1: the diagnostic build with the decode step's block timeline (src/cuda/trace.cuh),
# e.g. make BUILD=.tracebuild TRACE=1 STATIC_OMP=1 .tracebuild/g4
ifeq ($(TRACE),1)
NVFLAGS  += -DG4_TRACE
CFLAGS   += -DG4_TRACE
endif
# cuBLASLt (the optional W8A8 prefill GEMM, src/cuda/gemm_w8a8.cu) is a shared
# library (the static one is ~0.5 GB of kernels). By default gemm_w8a8.cu opens it
# with dlopen on its first call: linked, its start-up costs every process ~1 s and
# ~200 MB RSS (CLI, CPU tests), and a binary would not start where it is missing.
# The rpath lets dlopen (or the loader) find it in $(CUDA_HOME)/lib64 without
# LD_LIBRARY_PATH. CUBLASLT_DLOPEN=0 links it instead (-lcublasLt, recorded only in
# binaries that call it).
CUBLASLT_DLOPEN ?= 1
ifeq ($(CUBLASLT_DLOPEN),1)
CUBLASLT_LIBS := -Wl,-rpath,$(CUDA_HOME)/lib64
else
CUBLASLT_LIBS := -Wl,--push-state,--as-needed -lcublasLt -Wl,--pop-state -Wl,-rpath,$(CUDA_HOME)/lib64
$(BUILD)/src/cuda/gemm_w8a8.o: NVFLAGS += -DG4_CUBLASLT_LINKED=1
endif
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcudart_static $(CUBLASLT_LIBS) -ldl -lrt -lstdc++
endif

.PHONY: all test run clean fuzz trace-objs
all: $(BUILD)/g4

$(BUILD)/libg4.a: $(LIB_OBJ) $(CUDA_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/g4: $(CLI_OBJ) $(BUILD)/libg4.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libg4.a $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

$(BUILD)/tests/test_%: tests/test_%.c $(BUILD)/tests/test_main.o $(BUILD)/libg4.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/tests/test_main.o $(BUILD)/libg4.a $(LDLIBS)

# Unit and golden tests; the last line of tests/run.sh is "N passed, N failed".
test: $(BUILD)/g4 $(TEST_BIN)
	tests/run.sh $(TEST_BIN)

# Fresh machine: install, build, and generate with the small built-in demo
# model (or MODEL=dir, a real checkpoint).
run:
	tools/setup.sh
	$(MAKE) all
	tools/run_demo.sh $(MODEL)

clean:
	rm -rf $(BUILD) tests/tmp

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# Fresh Debian 12 machine: install what is needed, build everything, run the tests.
.PHONY: check
check:
	tools/setup.sh
	$(MAKE) all gpu-tests $(if $(filter 1,$(CUDA)),$(BUILD)/tests/gpu/gemm_check $(BUILD)/tests/gpu/gemv_bench $(BUILD)/tests/gpu/gemv_check \
	                                               $(BUILD)/tests/gpu/w8a8_check $(BUILD)/tests/gpu/attention_check trace-objs)
	$(MAKE) test

# The TRACE=1 build's instrumented sources compile (CI has no GPU to run them on; linking
# .tracebuild/g4 would be a second full CUDA build). TRACE=1 is for g4 only: the kernel
# checks do not link src/cuda/trace.cu.
TRACE_SRC := src/cuda/trace.cu src/cuda/gemv_tc.cu src/cuda/norm.cu src/cuda/attention_decode.cu src/cuda/sample.cu
trace-objs: $(TRACE_SRC:src/cuda/%.cu=$(BUILD)/trace/%.o) $(BUILD)/trace/cuda_forward.o
$(BUILD)/trace/%.o: src/cuda/%.cu $(wildcard src/*/*.h src/cuda/*.cuh)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -DG4_TRACE -c -o $@ $<
$(BUILD)/trace/cuda_forward.o: src/cuda/cuda_forward.c $(wildcard src/*/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DG4_TRACE -c -o $@ $<

.SECONDARY:

# libFuzzer on the safetensors header parser (clang, ASan + UBSan).
FUZZ_SECONDS ?= 600
FUZZ_SRC := src/model/safetensors.c src/util/err.c
$(BUILD)/fuzz_safetensors_header: fuzz/fuzz_safetensors_header.c $(FUZZ_SRC)
	@mkdir -p $(@D)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined -o $@ $^ -ljansson
fuzz: $(BUILD)/fuzz_safetensors_header
	mkdir -p fuzz/corpus-work
	$(BUILD)/fuzz_safetensors_header -max_total_time=$(FUZZ_SECONDS) -max_len=4096 fuzz/corpus-work fuzz/corpus

# The quantizer's inner loop is worth full vectorization.
$(BUILD)/src/model/quant.o: OPT = -O3 -Wno-psabi

# nvcc objects: rebuild when any header changes (nvcc writes no .d files here)
$(filter %.o,$(CUDA_SRC:%.cu=$(BUILD)/%.o)): $(wildcard src/*/*.h src/cuda/*.cuh)

# GPU tests (a machine with an NVIDIA GPU): every golden and engine test again
# on the CUDA backend, GPU greedy == CPU greedy for 64 steps, and the GPU
# sampler == the CPU sampler.
GPU_TESTS := $(BUILD)/tests/test_golden_hf $(BUILD)/tests/test_engine $(BUILD)/tests/gpu/test_gpu_vs_cpu \
             $(BUILD)/tests/gpu/test_gpu_sampling
$(BUILD)/tests/gpu/test_%: tests/gpu/test_%.c $(BUILD)/tests/test_main.o $(BUILD)/libg4.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/tests/test_main.o $(BUILD)/libg4.a $(LDLIBS)
.PHONY: test-gpu gpu-tests
gpu-tests: $(BUILD)/g4 $(GPU_TESTS) $(if $(filter 1,$(CUDA)),$(BUILD)/tests/gpu/attention_check)
test-gpu: gpu-tests
	G4_TEST_DEVICE=cuda tests/run.sh --no-scripts $(GPU_TESTS)
# GPU check and timing of the prefill GEMM (run it on a machine with an H100):
# make build/tests/gpu/gemm_check && build/tests/gpu/gemm_check
$(BUILD)/tests/gpu/gemm_check: tests/gpu/gemm_check.cu tests/gpu/check.cuh src/cuda/gemm.cu src/cuda/gemm_wgmma.cu src/cuda/common.cuh \
                               src/cuda/kernels.h src/cuda/gemm_wgmma.h src/cuda/wgmma_ops.cuh src/cuda/async_copy.cuh src/cuda/gemm_common.cuh src/cuda/layout.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ tests/gpu/gemm_check.cu src/cuda/gemm.cu src/cuda/gemm_wgmma.cu src/cuda/layout.cu

# GPU check and timing of the W8A8 prefill GEMM (cuBLASLt block scaling; H100):
# make build/tests/gpu/w8a8_check && build/tests/gpu/w8a8_check [--quick]
$(BUILD)/tests/gpu/w8a8_check: tests/gpu/w8a8_check.cu tests/gpu/check.cuh src/cuda/gemm_w8a8.cu src/cuda/gemm.cu src/cuda/gemm_wgmma.cu src/cuda/common.cuh src/cuda/gemm_common.cuh \
                               src/cuda/kernels.h src/cuda/async_copy.cuh
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ tests/gpu/w8a8_check.cu src/cuda/gemm_w8a8.cu src/cuda/gemm.cu src/cuda/gemm_wgmma.cu \
	    -L$(CUDA_HOME)/lib64 -lcublasLt -ldl -Xlinker -rpath,$(CUDA_HOME)/lib64

# Decode GEMVs: check against a float64 reference, and their throughput on the
# 12B's shapes (benchmark); GPU machine, G4_GEMV=simt for the CUDA-core kernels:
# make build/tests/gpu/gemv_check build/tests/gpu/gemv_bench
GEMV_SRC := src/cuda/gemv.cu src/cuda/gemv_tc.cu src/cuda/layout.cu src/cuda/norm.cu
$(BUILD)/tests/gpu/gemv_%: tests/gpu/gemv_%.cu tests/gpu/check.cuh $(GEMV_SRC) src/cuda/gemv_tc.h src/cuda/common.cuh src/cuda/kernels.h
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ $< $(GEMV_SRC)

# Attention kernels against a host fp64 reference, then their timings (GPU machine):
# make build/tests/gpu/attention_check && build/tests/gpu/attention_check [--quick]
ATTN_CHECK_SRC := src/cuda/attention.cu src/cuda/attention_decode.cu src/cuda/norm.cu
$(BUILD)/tests/gpu/attention_check: tests/gpu/attention_check.cu tests/gpu/check.cuh $(ATTN_CHECK_SRC) src/cuda/common.cuh src/cuda/kv.cuh src/cuda/kernels.h src/util/numerics.h
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -o $@ tests/gpu/attention_check.cu $(ATTN_CHECK_SRC)
