// neuroq: the fused multi-step CUDA kernels -- the entry points of entry_points.cuh as __global__
// kernels (nq_if_family_forward, nq_if_family_backward, nq_saf_forward_kernel,
// nq_saf_backward_kernel, nq_surrogate_backward_kernel).  Each thread owns NQ_ILP neurons of a tile
// of NQ_ILP * blockDim (neurons tile + j * blockDim + threadIdx.x: every load of a warp is
// coalesced, NQ_ILP of them in flight per thread, plus the next step's prefetch); the grid strides
// over tiles, so any N fits any grid.  The per-neuron math is kernels.cuh, shared with the CPU
// backend.
//
// Compiled by neuroq/ops/build.py (cuda_function) through cupy.RawModule once per (dtype, options)
// with -DNQ_STORAGE=float | nq_f16 | nq_bf16 and --fmad=false (bit-exact with torch's elementwise
// ops); launched by neuroq/ops/cuda.py.
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

#include "entry_points.cuh"
