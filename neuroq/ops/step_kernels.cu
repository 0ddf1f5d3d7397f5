// neuroq: the CUDA kernels of a generated neuron -- the entry points of step_entry_points.cuh as
// __global__ kernels (nq_step_forward, nq_step_backward), with the loop shape of neuron_kernels.cu
// (NQ_ILP neurons per thread, grid-stride over tiles).  The generated source is
//
//   #include "kernels.cuh"
//   struct NQStep { ... };  #define NQ_STEP_CONST_ARGS ...     // emitted by neuroq/ops/codegen.py
//   #include "step_kernels.cu"                                 // this file
//
// compiled by neuroq/ops/build.py (cuda_module) through cupy.RawModule once per (source, dtype) with
// the options of the hand-written kernels (--fmad=false) and launched by neuroq/ops/cuda.py.
#ifndef NQ_STORAGE
#define NQ_STORAGE float
#endif

#define NQ_S NQ_STORAGE
#define NQ_ENTRY(name) extern "C" __global__ void nq_##name
#define NQ_TILES(BODY)                                                                          \
    const long long lane = blockDim.x;                                                         \
    const long long tile = lane * NQ_ILP;                                                      \
    for (long long b = (long long)blockIdx.x * tile; b < n; b += (long long)gridDim.x * tile) { \
        const long long base = b + threadIdx.x;                                                 \
        BODY;                                                                                   \
    }

#include "step_entry_points.cuh"
