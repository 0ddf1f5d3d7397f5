// neuroq/ops/step_entry_points.cuh -- the CUDA entry points of a generated neuron (the struct NQStep
// that neuroq/ops/codegen.py emits from a neuron's own pure step), written once like those of
// entry_points.cuh: each takes its tensors, n, the step count, the kept-sequence masks, then the
// step's run-time constants and the fields of its surrogates as scalar arguments (the macros
// NQ_STEP_CONST_ARGS / NQ_STEP_SG_ARGS the emitter defines with NQStep), and runs the tiles
// nq_step_forward_tile / nq_step_backward_tile of kernels.cuh for every tile of NQ_ILP neurons it owns.
//
// Two files include this one: step_kernels.cu (the __global__ kernels CuPy launches) and the host
// harness of tests/ops/test_generated_kernels.py (the same functions over an emulated grid).  The
// includer defines NQ_ENTRY(name), NQ_TILES(BODY) and NQ_S as for entry_points.cuh.
#include "kernels.cuh"

// (the tiles' template arguments hold a comma, which a macro argument may not)
#define NQ_STEP_FORWARD_TILE nq_step_forward_tile<NQ_S, NQStep>
#define NQ_STEP_BACKWARD_TILE nq_step_backward_tile<NQ_S, NQStep>

NQ_ENTRY(step_forward)(
    const NQ_S* __restrict__ x, const NQ_S* __restrict__ st0, NQ_S* __restrict__ spike,
    NQ_S* __restrict__ seq, int seq_mask, float* __restrict__ saved, NQ_S* __restrict__ last, long long n,
    int steps NQ_STEP_CONST_ARGS) {
    const float c[] = NQ_STEP_CONST_INIT;
    NQ_TILES(NQ_STEP_FORWARD_TILE(c, x, st0, spike, seq, seq_mask, saved, last, base, lane, n,
                                                steps))
}

NQ_ENTRY(step_backward)(
    const float* __restrict__ saved, const NQ_S* __restrict__ g_spike,
    const NQ_S* __restrict__ g_seq, int g_seq_mask, const NQ_S* __restrict__ g_last, NQ_S* __restrict__ g_x,
    NQ_S* __restrict__ g_st0, long long n, int steps NQ_STEP_CONST_ARGS NQ_STEP_SG_ARGS) {
    const float c[] = NQ_STEP_CONST_INIT;
    NQSurrogate sg[NQStep::NSG > 0 ? (int)NQStep::NSG : 1];
    NQ_STEP_SG_SET
    NQ_TILES(NQ_STEP_BACKWARD_TILE(c, sg, saved, g_spike, g_seq, g_seq_mask, g_last, g_x, g_st0,
                                                 base, lane, n, steps))
}
