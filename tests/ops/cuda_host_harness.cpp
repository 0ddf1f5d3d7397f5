// CPU harness for the CUDA kernels of neuroq/ops/neuron_kernels.cu: the very entry points of
// neuroq/ops/entry_points.cuh (the file the GPU kernels are made of), instantiated here as host
// functions nq_host_<name>_<f32|f16|bf16> that loop over every (block, thread) of an emulated grid
// the way the GPU runs them (tiles of NQ_ILP * blockDim neurons, grid-stride), with C linkage for
// ctypes.  Argument lists are the kernels' own, so tests pass the very tuples neuroq.ops.cuda
// builds for the GPU.
// Build: g++ -O1 -std=c++14 -ffp-contract=off -fPIC -shared -I neuroq/ops this.cpp -o lib.so
#include "kernels.cuh"

static int g_grid = 3, g_threads = 32;  // small: many tiles per block and partial tiles
extern "C" void nq_host_set_grid(int grid, int threads) { g_grid = grid; g_threads = threads; }

#define NQ_HOST_NAME(name, sfx) nq_host_##name##_##sfx
#define NQ_HOST_ENTRY(name, sfx) extern "C" void NQ_HOST_NAME(name, sfx)
#define NQ_TILES(BODY)                                                                        \
    for (int blk = 0; blk < g_grid; ++blk)                                                    \
        for (int tid = 0; tid < g_threads; ++tid) {                                           \
            const long long lane = g_threads;                                                 \
            const long long tile = lane * NQ_ILP;                                             \
            for (long long b = (long long)blk * tile; b < n; b += (long long)g_grid * tile) { \
                const long long base = b + tid;                                               \
                BODY;                                                                         \
            }                                                                                 \
        }

#define NQ_S float
#define NQ_ENTRY(name) NQ_HOST_ENTRY(name, f32)
#include "entry_points.cuh"
#undef NQ_S
#undef NQ_ENTRY

#define NQ_S nq_f16
#define NQ_ENTRY(name) NQ_HOST_ENTRY(name, f16)
#include "entry_points.cuh"
#undef NQ_S
#undef NQ_ENTRY

#define NQ_S nq_bf16
#define NQ_ENTRY(name) NQ_HOST_ENTRY(name, bf16)
#include "entry_points.cuh"
#undef NQ_S
#undef NQ_ENTRY

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
template <typename B>
static void saved_spike(const float* h, float v_th, float* spike, long long n) {
    for (long long i = 0; i < n; ++i) {
        B b;
        float hh, xs, s;
        nq_save_pre(&b, h[i], v_th);
        nq_load_pre(&b, v_th, hh, xs, s);
        spike[i] = s;
    }
}
extern "C" void nq_host_saved_spike_f16(const float* h, float v_th, float* spike, long long n) {
    saved_spike<nq_f16>(h, v_th, spike, n);
}
extern "C" void nq_host_saved_spike_bf16(const float* h, float v_th, float* spike, long long n) {
    saved_spike<nq_bf16>(h, v_th, spike, n);
}
