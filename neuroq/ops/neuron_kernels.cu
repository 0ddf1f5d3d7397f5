// neuroq: CUDA entry points of the fused multi-step kernels -- the integrate-and-fire family (IF,
// LIF; hard/soft reset, decay_input, detach_reset, optional OTTT trace), the SAF neuron and the
// elementwise surrogate backward.  Each thread owns NQ_ILP neurons of a tile of NQ_ILP * blockDim
// (neurons tile + j * blockDim + threadIdx.x: every load of a warp is coalesced, NQ_ILP of them in
// flight per thread, plus the next step's prefetch); the grid strides over tiles, so any N fits any
// grid.  The per-neuron math is kernels.cuh, shared with the CPU backend.
//
// Compiled by neuroq/ops/cuda.py through cupy.RawModule once per (dtype, options) with
// -DNQ_STORAGE=float | nq_f16 | nq_bf16 and --fmad=false (bit-exact with torch's elementwise ops).
#include "kernels.cuh"

#ifndef NQ_STORAGE
#define NQ_STORAGE float
#endif
typedef NQ_STORAGE nq_storage_t;

__device__ __forceinline__ NQNeuron nq_make_neuron(int charge, int hard_reset, int detach_reset,
                                                   int recip_div, float tau, float inv_tau,
                                                   float decay, float dh_dx, float dh_dv,
                                                   float v_th, float v_reset) {
    NQNeuron p;
    p.charge = charge;
    p.hard_reset = hard_reset;
    p.detach_reset = detach_reset;
    p.recip_div = recip_div;
    p.tau = tau;
    p.inv_tau = inv_tau;
    p.decay = decay;
    p.dh_dx = dh_dx;
    p.dh_dv = dh_dv;
    p.v_th = v_th;
    p.v_reset = v_reset;
    return p;
}

__device__ __forceinline__ NQSurrogate nq_make_surrogate(int kind, int inner, int t_ref, float a0,
                                                         float a1, float a2, float vth) {
    NQSurrogate sg;
    sg.kind = kind;
    sg.inner = inner;
    sg.t_ref = t_ref;
    sg.a0 = a0;
    sg.a1 = a1;
    sg.a2 = a2;
    sg.vth = vth;
    return sg;
}

#define NQ_TILE_LOOP(BODY)                                                                      \
    const long long tile = (long long)blockDim.x * NQ_ILP;                                     \
    for (long long b = (long long)blockIdx.x * tile; b < n; b += (long long)gridDim.x * tile) { \
        const long long base = b + threadIdx.x;                                                 \
        BODY;                                                                                   \
    }

extern "C" __global__ void nq_if_family_forward(
    const nq_storage_t* __restrict__ x, const nq_storage_t* __restrict__ v0,
    nq_storage_t* __restrict__ spike, nq_storage_t* __restrict__ v_seq,
    nq_storage_t* __restrict__ saved, nq_storage_t* __restrict__ v_last,
    const nq_storage_t* __restrict__ trace0, nq_storage_t* __restrict__ trace_last,
    float trace_decay, long long n, int steps,
    int charge, int hard_reset, int detach_reset, int recip_div, float tau, float inv_tau,
    float decay, float dh_dx, float dh_dv, float v_th, float v_reset) {
    const NQNeuron p = nq_make_neuron(charge, hard_reset, detach_reset, recip_div, tau, inv_tau,
                                      decay, dh_dx, dh_dv, v_th, v_reset);
    NQ_TILE_LOOP(nq_if_forward_tile<nq_storage_t>(p, x, v0, spike, v_seq, saved, v_last, trace0,
                                                  trace_last, trace_decay, base, blockDim.x, n,
                                                  steps))
}

extern "C" __global__ void nq_if_family_backward(
    const nq_storage_t* __restrict__ g_spike, const nq_storage_t* __restrict__ g_v_seq,
    const nq_storage_t* __restrict__ g_v_last, const nq_storage_t* __restrict__ saved,
    nq_storage_t* __restrict__ g_x, nq_storage_t* __restrict__ g_v0, long long n, int steps,
    int charge, int hard_reset, int detach_reset, int recip_div, float tau, float inv_tau,
    float decay, float dh_dx, float dh_dv, float v_th, float v_reset,
    int sg_kind, int sg_inner, int sg_t_ref, float sg_a0, float sg_a1, float sg_a2, float sg_vth) {
    const NQNeuron p = nq_make_neuron(charge, hard_reset, detach_reset, recip_div, tau, inv_tau,
                                      decay, dh_dx, dh_dv, v_th, v_reset);
    const NQSurrogate sg = nq_make_surrogate(sg_kind, sg_inner, sg_t_ref, sg_a0, sg_a1, sg_a2, sg_vth);
    NQ_TILE_LOOP(nq_if_backward_tile<nq_storage_t>(p, sg, g_spike, g_v_seq, g_v_last, saved, g_x,
                                                   g_v0, base, blockDim.x, n, steps))
}

__device__ __forceinline__ NQSAF nq_make_saf(int decay_input, int detach_state, int recip_div,
                                             float tau, float inv_tau, float lam, float dd_du,
                                             float v_th) {
    NQSAF p;
    p.decay_input = decay_input;
    p.detach_state = detach_state;
    p.recip_div = recip_div;
    p.tau = tau;
    p.inv_tau = inv_tau;
    p.lam = lam;
    p.dd_du = dd_du;
    p.v_th = v_th;
    return p;
}

extern "C" __global__ void nq_saf_forward_kernel(
    const nq_storage_t* __restrict__ u_hat, const nq_storage_t* __restrict__ a0,
    nq_storage_t* __restrict__ a_seq, nq_storage_t* __restrict__ x_saved,
    nq_storage_t* __restrict__ a_last, long long n, int steps, int decay_input, int detach_state,
    int recip_div, float tau, float inv_tau, float lam, float dd_du, float v_th) {
    const NQSAF p = nq_make_saf(decay_input, detach_state, recip_div, tau, inv_tau, lam, dd_du, v_th);
    NQ_TILE_LOOP(nq_saf_forward_tile<nq_storage_t>(p, u_hat, a0, a_seq, x_saved, a_last, base,
                                                   blockDim.x, n, steps))
}

extern "C" __global__ void nq_saf_backward_kernel(
    const nq_storage_t* __restrict__ g_a_seq, const nq_storage_t* __restrict__ g_a_last,
    const nq_storage_t* __restrict__ x_saved, nq_storage_t* __restrict__ g_u,
    nq_storage_t* __restrict__ g_a0, long long n, int steps, int decay_input, int detach_state,
    int recip_div, float tau, float inv_tau, float lam, float dd_du, float v_th, int sg_kind,
    int sg_inner, int sg_t_ref, float sg_a0, float sg_a1, float sg_a2, float sg_vth) {
    const NQSAF p = nq_make_saf(decay_input, detach_state, recip_div, tau, inv_tau, lam, dd_du, v_th);
    const NQSurrogate sg = nq_make_surrogate(sg_kind, sg_inner, sg_t_ref, sg_a0, sg_a1, sg_a2, sg_vth);
    NQ_TILE_LOOP(nq_saf_backward_tile<nq_storage_t>(p, sg, g_a_seq, g_a_last, x_saved, g_u, g_a0,
                                                    base, blockDim.x, n, steps))
}

extern "C" __global__ void nq_surrogate_backward_kernel(
    const nq_storage_t* __restrict__ x, const nq_storage_t* __restrict__ g,
    nq_storage_t* __restrict__ g_x, long long n, int sg_kind, int sg_inner, int sg_t_ref,
    float sg_a0, float sg_a1, float sg_a2, float sg_vth) {
    const NQSurrogate sg = nq_make_surrogate(sg_kind, sg_inner, sg_t_ref, sg_a0, sg_a1, sg_a2, sg_vth);
    NQ_TILE_LOOP(nq_surrogate_backward_tile<nq_storage_t>(sg, x, g, g_x, base, blockDim.x, n))
}
