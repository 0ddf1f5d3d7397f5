// neuroq/ops/entry_points.cuh -- the entry points of the fused CUDA kernels, written once: the
// integrate-and-fire family (IF, LIF; hard/soft reset, decay_input, detach_reset, optional OTTT
// trace), the SAF neuron and the elementwise surrogate backward.  Each takes its tensors, n, the
// step count and the parameter structs of kernels.cuh field by field (the field lists, so the
// argument order is the structs' order), rebuilds the structs and runs the tile function of
// kernels.cuh for every tile of NQ_ILP neurons it owns.
//
// Two files include this one and say how it is instantiated:
//   * neuron_kernels.cu: the __global__ kernels CuPy launches (nq_<name>), over the GPU grid;
//   * tests/ops/cuda_host_harness.cpp: the same functions on the host (nq_host_<name>_<storage>),
//     once per storage type, over an emulated grid -- so the tests call these very entry points.
// The includer defines, before each inclusion:
//   NQ_ENTRY(name)   the head of entry point `name` up to its argument list;
//   NQ_TILES(BODY)   runs BODY for each tile this thread owns, with `base` (its first neuron) and
//                    `lane` (the stride between its NQ_ILP neurons) in scope;
//   NQ_S             the storage type (float, nq_f16 or nq_bf16).
// No include guard: the harness includes it once per storage type.
#include "kernels.cuh"

// one argument per struct field ("sg_" before a surrogate field: SAF has its own a0), and the
// struct rebuilt from them
#define NQ_ARG(T, name) , T name
#define NQ_SG_ARG(T, name) , T sg_##name
#define NQ_SET_P(T, name) p.name = name;
#define NQ_SET_SG(T, name) sg.name = sg_##name;

NQ_ENTRY(if_family_forward)(
    const NQ_S* __restrict__ x, const NQ_S* __restrict__ v0, NQ_S* __restrict__ spike,
    NQ_S* __restrict__ v_seq, NQ_S* __restrict__ saved, NQ_S* __restrict__ v_last,
    const NQ_S* __restrict__ trace0, NQ_S* __restrict__ trace_last, float trace_decay, long long n,
    int steps NQ_NEURON_FIELDS(NQ_ARG)) {
    NQNeuron p;
    NQ_NEURON_FIELDS(NQ_SET_P)
    NQ_TILES(nq_if_forward_tile<NQ_S>(p, x, v0, spike, v_seq, saved, v_last, trace0, trace_last,
                                      trace_decay, base, lane, n, steps))
}

NQ_ENTRY(if_family_backward)(
    const NQ_S* __restrict__ g_spike, const NQ_S* __restrict__ g_v_seq,
    const NQ_S* __restrict__ g_v_last, const NQ_S* __restrict__ saved, NQ_S* __restrict__ g_x,
    NQ_S* __restrict__ g_v0, long long n,
    int steps NQ_NEURON_FIELDS(NQ_ARG) NQ_SURROGATE_FIELDS(NQ_SG_ARG)) {
    NQNeuron p;
    NQ_NEURON_FIELDS(NQ_SET_P)
    NQSurrogate sg;
    NQ_SURROGATE_FIELDS(NQ_SET_SG)
    NQ_TILES(nq_if_backward_tile<NQ_S>(p, sg, g_spike, g_v_seq, g_v_last, saved, g_x, g_v0, base,
                                       lane, n, steps))
}

NQ_ENTRY(saf_forward_kernel)(
    const NQ_S* __restrict__ u_hat, const NQ_S* __restrict__ a0, NQ_S* __restrict__ a_seq,
    NQ_S* __restrict__ x_saved, NQ_S* __restrict__ a_last, long long n,
    int steps NQ_SAF_FIELDS(NQ_ARG)) {
    NQSAF p;
    NQ_SAF_FIELDS(NQ_SET_P)
    NQ_TILES(nq_saf_forward_tile<NQ_S>(p, u_hat, a0, a_seq, x_saved, a_last, base, lane, n, steps))
}

NQ_ENTRY(saf_backward_kernel)(
    const NQ_S* __restrict__ g_a_seq, const NQ_S* __restrict__ g_a_last,
    const NQ_S* __restrict__ x_saved, NQ_S* __restrict__ g_u, NQ_S* __restrict__ g_a0, long long n,
    int steps NQ_SAF_FIELDS(NQ_ARG) NQ_SURROGATE_FIELDS(NQ_SG_ARG)) {
    NQSAF p;
    NQ_SAF_FIELDS(NQ_SET_P)
    NQSurrogate sg;
    NQ_SURROGATE_FIELDS(NQ_SET_SG)
    NQ_TILES(nq_saf_backward_tile<NQ_S>(p, sg, g_a_seq, g_a_last, x_saved, g_u, g_a0, base, lane, n,
                                        steps))
}

NQ_ENTRY(surrogate_backward_kernel)(
    const NQ_S* __restrict__ x, const NQ_S* __restrict__ g, NQ_S* __restrict__ g_x,
    long long n NQ_SURROGATE_FIELDS(NQ_SG_ARG)) {
    NQSurrogate sg;
    NQ_SURROGATE_FIELDS(NQ_SET_SG)
    NQ_TILES(nq_surrogate_backward_tile<NQ_S>(sg, x, g, g_x, base, lane, n))
}
