// CPU harness for the CUDA entry points of neuroq/ops/neuron_kernels.cu: the same tile functions
// of kernels.cuh, called for every (block, thread) of an emulated grid the way the GPU calls them
// (tiles of NQ_ILP * blockDim neurons, grid-stride), exported with C linkage for ctypes.  Argument
// lists are the kernels' own, so tests pass the very tuples neuroq.ops.cuda builds for the GPU.
// Build: g++ -O1 -std=c++14 -ffp-contract=off -fPIC -shared -I neuroq/ops this.cpp -o lib.so
#include "kernels.cuh"

static int g_grid = 3, g_threads = 32;  // small: many tiles per block and partial tiles
extern "C" void nq_host_set_grid(int grid, int threads) { g_grid = grid; g_threads = threads; }

#define NQ_HOST_TILES(BODY)                                                            \
    for (int blk = 0; blk < g_grid; ++blk)                                             \
        for (int tid = 0; tid < g_threads; ++tid) {                                    \
            const long long tile = (long long)g_threads * NQ_ILP;                      \
            for (long long b = (long long)blk * tile; b < n; b += (long long)g_grid * tile) { \
                const long long base = b + tid;                                        \
                BODY;                                                                  \
            }                                                                          \
        }

static NQNeuron make_neuron(int charge, int hard_reset, int detach_reset, int recip_div, float tau,
                            float inv_tau, float decay, float dh_dx, float dh_dv, float v_th,
                            float v_reset) {
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

static NQSurrogate make_sg(int kind, int inner, int t_ref, float a0, float a1, float a2, float vth) {
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

static NQSAF make_saf(int decay_input, int detach_state, int recip_div, float tau, float inv_tau,
                      float lam, float dd_du, float v_th) {
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

#define NQ_NEURON_ARGS                                                                          \
    int charge, int hard_reset, int detach_reset, int recip_div, float tau, float inv_tau,     \
        float decay, float dh_dx, float dh_dv, float v_th, float v_reset
#define NQ_NEURON_PASS \
    charge, hard_reset, detach_reset, recip_div, tau, inv_tau, decay, dh_dx, dh_dv, v_th, v_reset
#define NQ_SG_ARGS int sg_kind, int sg_inner, int sg_t_ref, float sg_a0, float sg_a1, float sg_a2, float sg_vth
#define NQ_SG_PASS sg_kind, sg_inner, sg_t_ref, sg_a0, sg_a1, sg_a2, sg_vth
#define NQ_SAF_ARGS int di, int ds, int rd, float tau, float inv_tau, float lam, float dd_du, float v_th

#define NQ_HOST_API(SUFFIX, S)                                                                   \
    extern "C" void nq_host_if_family_forward_##SUFFIX(                                          \
        const S* x, const S* v0, S* spike, S* v_seq, S* saved, S* v_last, const S* trace0,       \
        S* trace_last, float trace_decay, long long n, int steps, NQ_NEURON_ARGS) {              \
        NQNeuron p = make_neuron(NQ_NEURON_PASS);                                                \
        NQ_HOST_TILES(nq_if_forward_tile<S>(p, x, v0, spike, v_seq, saved, v_last, trace0,       \
                                            trace_last, trace_decay, base, g_threads, n, steps)) \
    }                                                                                            \
    extern "C" void nq_host_if_family_backward_##SUFFIX(                                         \
        const S* g_spike, const S* g_v_seq, const S* g_v_last, const S* saved, S* g_x, S* g_v0,  \
        long long n, int steps, NQ_NEURON_ARGS, NQ_SG_ARGS) {                                    \
        NQNeuron p = make_neuron(NQ_NEURON_PASS);                                                \
        NQSurrogate sg = make_sg(NQ_SG_PASS);                                                    \
        NQ_HOST_TILES(nq_if_backward_tile<S>(p, sg, g_spike, g_v_seq, g_v_last, saved, g_x,      \
                                             g_v0, base, g_threads, n, steps))                   \
    }                                                                                            \
    extern "C" void nq_host_saf_forward_kernel_##SUFFIX(const S* u, const S* a0, S* a_seq,       \
                                                        S* x_saved, S* a_last, long long n,      \
                                                        int steps, NQ_SAF_ARGS) {                \
        NQSAF p = make_saf(di, ds, rd, tau, inv_tau, lam, dd_du, v_th);                          \
        NQ_HOST_TILES(nq_saf_forward_tile<S>(p, u, a0, a_seq, x_saved, a_last, base, g_threads,  \
                                             n, steps))                                          \
    }                                                                                            \
    extern "C" void nq_host_saf_backward_kernel_##SUFFIX(                                        \
        const S* g_a_seq, const S* g_a_last, const S* x_saved, S* g_u, S* g_a0, long long n,     \
        int steps, NQ_SAF_ARGS, NQ_SG_ARGS) {                                                    \
        NQSAF p = make_saf(di, ds, rd, tau, inv_tau, lam, dd_du, v_th);                          \
        NQSurrogate sg = make_sg(NQ_SG_PASS);                                                    \
        NQ_HOST_TILES(nq_saf_backward_tile<S>(p, sg, g_a_seq, g_a_last, x_saved, g_u, g_a0,      \
                                              base, g_threads, n, steps))                        \
    }                                                                                            \
    extern "C" void nq_host_surrogate_backward_kernel_##SUFFIX(const S* x, const S* g, S* g_x,   \
                                                               long long n, NQ_SG_ARGS) {        \
        NQSurrogate sg = make_sg(NQ_SG_PASS);                                                    \
        NQ_HOST_TILES(nq_surrogate_backward_tile<S>(sg, x, g, g_x, base, g_threads, n))          \
    }

NQ_HOST_API(f32, float)
NQ_HOST_API(f16, nq_f16)
NQ_HOST_API(bf16, nq_bf16)

// storage conversions alone (checked against torch's .half() / .bfloat16() rounding)
extern "C" void nq_host_to_f16(const float* x, unsigned short* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = nq_float_to_f16(x[i]);
}
extern "C" void nq_host_from_f16(const unsigned short* x, float* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = nq_f16_to_float(x[i]);
}
extern "C" void nq_host_to_bf16(const float* x, unsigned short* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = nq_float_to_bf16(x[i]);
}
// the CPU exponential alone (relative error vs. double exp, checked by the tests)
extern "C" void nq_host_exp(const float* x, float* out, long long n) {
    for (long long i = 0; i < n; ++i) out[i] = nq_exp(x[i]);
}
// the saved-H path of the 16-bit kernels alone: save H (as H - V_th), load it back -> spike
extern "C" void nq_host_saved_spike_f16(const float* h, float v_th, float* spike, long long n) {
    for (long long i = 0; i < n; ++i) {
        nq_f16 b;
        float hh, xs, s;
        nq_save_pre(&b, h[i], v_th);
        nq_load_pre(&b, v_th, hh, xs, s);
        spike[i] = s;
    }
}
extern "C" void nq_host_saved_spike_bf16(const float* h, float v_th, float* spike, long long n) {
    for (long long i = 0; i < n; ++i) {
        nq_bf16 b;
        float hh, xs, s;
        nq_save_pre(&b, h[i], v_th);
        nq_load_pre(&b, v_th, hh, xs, s);
        spike[i] = s;
    }
}
