// neuroq/ops/kernels.cuh -- the per-neuron math of neuroq's fused multi-step kernels, written once
// for every device: compiled by NVRTC (CuPy) for CUDA tensors (neuron_kernels.cu) and by the C++
// compiler for CPU tensors (neuron_kernels_cpu.cpp, OpenMP + SIMD over neurons).  The torch
// reference (neuroq/functional/) is the definition of correct; the tests hold every kernel to it.
//
// Integrate-and-fire family, per time step t (SpikingJelly's convention):
//   charge  H[t] = f(V[t-1], X[t])
//   fire    S[t] = Theta(H[t] - V_th)                 (Theta(0) = 1)
//   reset   V[t] = (1 - S[t]) H[t] + S[t] V_reset      hard reset
//           V[t] = H[t] - S[t] V_th                   soft reset
// Backward (BPTT, surrogate sg'(H - V_th) for dS/dH):
//   dL/dH[t] = dL/dV[t] dV[t]/dH[t] + dL/dS[t] sg'[t]
//   dV/dH    = 1 - S + (V_reset - H) sg'   (hard; the sg' term is dropped with detach_reset)
//            = 1 - V_th sg'                (soft; idem)
//   dL/dX[t] = dL/dH[t] dH/dX,   dL/dV[t-1] = dL/dH[t] dH/dV   (+ dL/dV_seq[t-1])
//
// SAF neuron (Spike Accumulation Forwarding, Saiin et al., TMLR 2024), lambda = 1 - 1/tau:
//   D[t] = U^[t] (/ tau with decay_input);  X[t] = D[t] - V_th (lambda a^[t-1] + 1)
//   s[t] = Theta(X[t]);  a^[t] = lambda a^[t-1] + s[t]
//   dL/dU^[t] = g_a[t] sg'(X[t]) dD/dU^;  unless detach_state: dL/da^[t-1] += g_a[t] lambda (1 - V_th sg'(X[t]))
//
// The forward arithmetic repeats the torch reference operation by operation in fp32, so spikes and
// states agree bit for bit; this needs FMA contraction off (NVRTC --fmad=false, g++
// -ffp-contract=off).  Storage may be fp32, fp16 or bf16; the state and the arithmetic are fp32.
//
// Layout [T, N] contiguous: element (t, i) at t * N + i (64-bit index: T*N may exceed 2^31).
// Generated neurons (neuroq/ops/codegen.py): a neuron's own pure step, traced and emitted as a struct
// NQStep { enum { NSTATE, NCONST, NSG, NSAVE }; forward(c, x, st) -> spike; forward_save(c, x, st, sv)
// -> spike, keeping NSAVE values for backward; backward(c, sg, sv, g_spike, gs) -> dL/dx } with its
// constants c[] as run-time values; the same two loop shapes run it (the tiles
// nq_step_*_tile below, the CPU blocks of step_kernels_cpu.cpp).
//
// Two loop shapes use the per-element functions below:
//   * CUDA ("tiles"): one thread owns NQ_ILP neurons i, i + blockDim, ... and loops over T with their
//     states in registers, loading the next step's inputs before this step's arithmetic
//     (2 * NQ_ILP loads in flight per thread);
//   * CPU ("blocks", neuron_kernels_cpu.cpp): one OpenMP thread owns a block of B neurons, the time
//     loop outside, a SIMD loop over the block inside, the block's states in an L1-resident buffer.
#ifndef NEUROQ_OPS_KERNELS_CUH
#define NEUROQ_OPS_KERNELS_CUH

#if defined(__CUDACC__)
#define NQ_HD __host__ __device__ __forceinline__
#define NQ_HD_MEMBER __host__ __device__ __forceinline__
#define NQ_UNROLL _Pragma("unroll")
#else
#define NQ_HD static inline __attribute__((always_inline))
#define NQ_HD_MEMBER inline __attribute__((always_inline))
#define NQ_UNROLL
#endif

#if !defined(__CUDACC_RTC__)
#include <math.h>
#include <string.h>
#endif

#ifndef NQ_ILP
#define NQ_ILP 4
#endif

typedef long long nq_index_t;

// ---- storage types ---------------------------------------------------------------------------
// fp16 / bf16 values travel as their raw 16 bits; conversions are written out (round to nearest
// even, as torch's .half() / .bfloat16()) so no CUDA header is needed and host == device.
struct nq_f16 { unsigned short bits; };
struct nq_bf16 { unsigned short bits; };

NQ_HD float nq_bits_to_float(unsigned int u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
#endif
}

NQ_HD unsigned int nq_float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    unsigned int u;
    memcpy(&u, &f, sizeof(u));
    return u;
#endif
}

NQ_HD float nq_f16_to_float(unsigned short h) {
    unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
    unsigned int e = ((unsigned int)h >> 10) & 0x1fu;
    unsigned int m = (unsigned int)h & 0x3ffu;
    if (e == 0u) {  // zero or subnormal: m * 2^-24 (exact in fp32)
        float mag = (float)m * 5.9604644775390625e-8f;
        return sign ? -mag : mag;
    }
    if (e == 31u) return nq_bits_to_float(sign | 0x7f800000u | (m << 13));  // inf / nan
    return nq_bits_to_float(sign | ((e + 112u) << 23) | (m << 13));
}

NQ_HD unsigned short nq_float_to_f16(float f) {
    unsigned int x = nq_float_to_bits(f);
    unsigned int sign = (x >> 16) & 0x8000u;
    unsigned int ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (unsigned short)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // >= 65520 rounds to inf
    if (ax < 0x33000000u) return (unsigned short)sign;               // < 2^-25 rounds to 0
    unsigned int e = ax >> 23;
    unsigned int r, rem, half;
    if (ax < 0x38800000u) {  // fp16 subnormal: round |f| / 2^-24 to an integer
        unsigned int m = (ax & 0x7fffffu) | 0x800000u;
        unsigned int shift = 126u - e;  // 14..24
        r = m >> shift;
        rem = m & ((1u << shift) - 1u);
        half = 1u << (shift - 1u);
    } else {
        r = ((e - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
        rem = ax & 0x1fffu;
        half = 0x1000u;
    }
    if (rem > half || (rem == half && (r & 1u))) r += 1u;
    return (unsigned short)(sign | r);
}

NQ_HD float nq_bf16_to_float(unsigned short b) { return nq_bits_to_float(((unsigned int)b) << 16); }

NQ_HD unsigned short nq_float_to_bf16(float f) {
    unsigned int x = nq_float_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((x >> 16) | 0x40u);  // quiet nan
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}

NQ_HD float nq_load(const float* p) { return *p; }
NQ_HD float nq_load(const nq_f16* p) { return nq_f16_to_float(p->bits); }
NQ_HD float nq_load(const nq_bf16* p) { return nq_bf16_to_float(p->bits); }
NQ_HD void nq_store(float* p, float v) { *p = v; }
NQ_HD void nq_store(nq_f16* p, float v) { p->bits = nq_float_to_f16(v); }
NQ_HD void nq_store(nq_bf16* p, float v) { p->bits = nq_float_to_bf16(v); }

// What the GPU forward saves for backward, in the storage dtype (no fp32 side buffer):
//   fp32 storage: H itself (exact);
//   fp16/bf16:    H - V_th rounded to the storage dtype.  Rounding to nearest keeps the sign bit, so
//                 the spike recomputed as "sign bit clear" is exactly the forward's (a -0 from a tiny
//                 negative value reads as no spike); H = (H - V_th) + V_th is only used by the
//                 gradient, which is then good to the storage precision.
NQ_HD void nq_save_pre(float* p, float h, float v_th) { *p = h; (void)v_th; }
// (An exact zero is stored as +0: (H - V_th) + 0 turns -0 into +0, and Theta(-0) = 1 too.)
NQ_HD void nq_save_pre(nq_f16* p, float h, float v_th) { p->bits = nq_float_to_f16((h - v_th) + 0.0f); }
NQ_HD void nq_save_pre(nq_bf16* p, float h, float v_th) { p->bits = nq_float_to_bf16((h - v_th) + 0.0f); }
NQ_HD void nq_load_pre(const float* p, float v_th, float& h, float& xs, float& s) {
    h = *p;
    xs = h - v_th;
    s = xs >= 0.0f ? 1.0f : 0.0f;
}
NQ_HD void nq_load_pre(const nq_f16* p, float v_th, float& h, float& xs, float& s) {
    xs = nq_f16_to_float(p->bits);
    h = xs + v_th;
    s = (p->bits & 0x8000u) ? 0.0f : 1.0f;
}
NQ_HD void nq_load_pre(const nq_bf16* p, float v_th, float& h, float& xs, float& s) {
    xs = nq_bf16_to_float(p->bits);
    h = xs + v_th;
    s = (p->bits & 0x8000u) ? 0.0f : 1.0f;
}

// ---- neuron parameters -----------------------------------------------------------------------
// Built on the host from neuroq.functional's parameter records (neuroq/ops/params.py), each
// constant rounded to fp32 exactly as torch rounds the Python scalar in the reference.
// Charge modes: each repeats one expression of neuroq.functional.neuron (torch reference).
enum {
    NQ_CHARGE_IF = 0,           // H = V + X
    NQ_CHARGE_LIF_DI0 = 1,      // decay_input, V_reset 0/None:  H = V + (X - V) / tau
    NQ_CHARGE_LIF_DI = 2,       // decay_input:                  H = V + (X - (V - V_reset)) / tau
    NQ_CHARGE_LIF_NODI0 = 3,    // no decay_input, V_reset 0/None: H = V * (1 - 1/tau) + X
    NQ_CHARGE_LIF_NODI = 4      // no decay_input:               H = V - (V - V_reset) / tau + X
};

// The parameter structs are written once, as field lists X(type, name) in order: the structs
// below, the CUDA kernels' argument lists (entry_points.cuh) and the ctypes structures of the CPU
// backend (neuroq/ops/abi.py reads these lists) all come from them; neuroq/ops/params.py builds the
// values in the same order.
#define NQ_NEURON_FIELDS(X)                                                                        \
    X(int, charge)       /* NQ_CHARGE_* */                                                         \
    X(int, hard_reset)   /* 1: hard reset to v_reset, 0: soft reset (subtract v_th) */             \
    X(int, detach_reset) /* 1: the spike in the reset path carries no gradient */                  \
    X(int, recip_div)    /* 1: a/tau as a*(1/tau) (torch on CUDA), 0: true division (CPU) */       \
    X(float, tau)        /* (float) tau */                                                         \
    X(float, inv_tau)    /* float32(1) / float32(tau), what torch's CUDA division uses */          \
    X(float, decay)      /* (float)(1 - 1/tau) rounded from double (python's scalar) */            \
    X(float, dh_dx)      /* dH/dX */                                                               \
    X(float, dh_dv)      /* dH/dV */                                                               \
    X(float, v_th)                                                                                 \
    X(float, v_reset)

#define NQ_STRUCT_FIELD(T, name) T name;

struct NQNeuron {
    NQ_NEURON_FIELDS(NQ_STRUCT_FIELD)
};

NQ_HD float nq_div_tau(const NQNeuron& p, int recip, float a) { return recip ? a * p.inv_tau : a / p.tau; }

// ``mode`` and ``recip`` are p.charge / p.recip_div on the GPU and compile-time constants on the
// CPU (template arguments), where the switch then folds away and the loop vectorises.
NQ_HD float nq_charge(const NQNeuron& p, int mode, int recip, float x, float v) {
    switch (mode) {
        case NQ_CHARGE_LIF_DI0: return v + nq_div_tau(p, recip, x - v);
        case NQ_CHARGE_LIF_DI: return v + nq_div_tau(p, recip, x - (v - p.v_reset));
        case NQ_CHARGE_LIF_NODI0: return v * p.decay + x;
        case NQ_CHARGE_LIF_NODI: return (v - nq_div_tau(p, recip, v - p.v_reset)) + x;
        default: return v + x;
    }
}

NQ_HD float nq_fire(const NQNeuron& p, float h) { return (h - p.v_th) >= 0.0f ? 1.0f : 0.0f; }

NQ_HD float nq_reset(const NQNeuron& p, float h, float s) {
    return p.hard_reset ? (1.0f - s) * h + s * p.v_reset : h - s * p.v_th;
}

// dL/dH[t] from dL/dV[t] (gv), dL/dS[t] (gs), H, S and sg'(H - V_th) = d.
NQ_HD float nq_grad_h(const NQNeuron& p, float h, float s, float d, float gv, float gs) {
    float dv_dh = p.hard_reset ? (1.0f - s) + (p.detach_reset ? 0.0f : (p.v_reset - h) * d)
                               : 1.0f - (p.detach_reset ? 0.0f : p.v_th * d);
    return gv * dv_dh + gs * d;
}

// ---- surrogate derivatives sg'(x), x = H - V_th ----------------------------------------------
// Constants a0..a2 are computed on the host in double and rounded once, as torch does with the
// Python scalars of SpikingJelly's backward formulas.
enum {
    NQ_SG_SIGMOID = 1,     // a0 = alpha:                   s = sigmoid(alpha x); alpha s (1 - s)
    NQ_SG_ATAN = 2,        // a0 = alpha/2, a1 = pi alpha/2: a0 / (1 + (a1 x)^2)
    NQ_SG_PIECEWISE_QUADRATIC = 3,  // a0 = 1/alpha, a1 = -alpha^2, a2 = alpha: |x| > a0 ? 0 : a1 |x| + a2
    NQ_SG_RECT = 4,        // a0 = 0.5/alpha, a2 = alpha:   |x| < a0 ? alpha : 0
    NQ_SG_S2NN = 5         // neuroq.surrogate.S2NN: inner per-step kind/constants, t_ref, vth
};

#define NQ_SURROGATE_FIELDS(X)                                                                     \
    X(int, kind)        /* NQ_SG_* */                                                              \
    X(int, inner)       /* S2NN: per-step kind (sigmoid / atan / rect) */                          \
    X(int, t_ref)       /* S2NN: T_ref */                                                          \
    X(float, a0)                                                                                   \
    X(float, a1)                                                                                   \
    X(float, a2)                                                                                   \
    X(float, vth)       /* S2NN: V_th of the reduced IF neuron */

struct NQSurrogate {
    NQ_SURROGATE_FIELDS(NQ_STRUCT_FIELD)
};

// exp on the host: a branch-free Cody-Waite + degree-6 polynomial (Cephes' expf, max error ~2 ulp)
// that the compiler vectorises; the surrogate derivative only enters gradients (checked to 1e-5).
// On the GPU: CUDA's expf.
NQ_HD float nq_exp(float x) {
#if defined(__CUDACC__)
    return expf(x);
#else
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365478515625f ? -87.3365478515625f : x;
    const float magic = 12582912.0f;  // 1.5 * 2^23: (y + magic) - magic rounds y to an integer
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    int e = (int)n + 127;  // 1..255 after the clamps above (255: inf, whose sigmoid is 0 as in torch)
    return y * nq_bits_to_float((unsigned int)e << 23);
#endif
}

NQ_HD float nq_sg_basic(int kind, float a0, float a1, float a2, float x) {
    switch (kind) {
        case NQ_SG_SIGMOID: {
            float s = 1.0f / (1.0f + nq_exp(-(x * a0)));
            return (1.0f - s) * s * a0;
        }
        case NQ_SG_ATAN: {
            float ax = a1 * x;
            return a0 / (1.0f + ax * ax);
        }
        case NQ_SG_PIECEWISE_QUADRATIC: {
            float xa = fabsf(x);
            return xa > a0 ? 0.0f : a1 * xa + a2;
        }
        case NQ_SG_RECT: return fabsf(x) < a0 ? a2 : 0.0f;
        default: return 0.0f;
    }
}

// S2NN (neuroq.surrogate.s2nn_gradient): BPTT gradient dr/du of a T_ref-step soft-reset IF neuron
// driven by the constant u = x + vth, with the per-step surrogate kept on the reset path:
//   g_1 = 1, g_{t+1} = 1 + g_t (1 - vth sg'_t),  dr/du = (1/T_ref) sum_t sg'_t g_t.
NQ_HD float nq_sg_s2nn(int inner, const NQSurrogate& sg, float x) {
    float u = x + sg.vth;
    float v = 0.0f, g = 1.0f, acc = 0.0f;
    for (int t = 0; t < sg.t_ref; ++t) {
        float h = v + u;
        float xx = h - sg.vth;
        float d = nq_sg_basic(inner, sg.a0, sg.a1, sg.a2, xx);
        acc = acc + d * g;
        float s = xx >= 0.0f ? 1.0f : 0.0f;
        v = h - sg.vth * s;
        g = 1.0f + g * (1.0f - sg.vth * d);
    }
    return acc / (float)sg.t_ref;
}

// ``kind`` / ``inner`` are sg.kind / sg.inner on the GPU, template constants on the CPU.
NQ_HD float nq_surrogate_grad(int kind, int inner, const NQSurrogate& sg, float x) {
    if (kind == NQ_SG_S2NN) return nq_sg_s2nn(inner, sg, x);
    return nq_sg_basic(kind, sg.a0, sg.a1, sg.a2, x);
}

// ---- SAF parameters --------------------------------------------------------------------------
#define NQ_SAF_FIELDS(X)                                                                           \
    X(int, decay_input)                                                                            \
    X(int, detach_state)                                                                           \
    X(int, recip_div)                                                                              \
    X(float, tau)                                                                                  \
    X(float, inv_tau)                                                                              \
    X(float, lam)       /* (float)(1 - 1/tau) */                                                   \
    X(float, dd_du)     /* dD/dU^: 1/tau or 1 */                                                   \
    X(float, v_th)

struct NQSAF {
    NQ_SAF_FIELDS(NQ_STRUCT_FIELD)
};

NQ_HD float nq_saf_drive(const NQSAF& p, int recip, float u) {
    if (!p.decay_input) return u;
    return recip ? u * p.inv_tau : u / p.tau;
}

// One SAF step: returns X[t] (the pre-activation), updates a.
NQ_HD float nq_saf_step(const NQSAF& p, int recip, float u, float& a) {
    float d = nq_saf_drive(p, recip, u);
    float la = a * p.lam;
    float x = d - (la + 1.0f) * p.v_th;
    float s = x >= 0.0f ? 1.0f : 0.0f;
    a = la + s;
    return x;
}

// ---- CUDA tiles: one thread, NQ_ILP neurons base + j * lane_stride ----------------------------
// Called by the entry points of entry_points.cuh: the __global__ kernels of neuron_kernels.cu, and
// the same functions on the host in tests/ops/cuda_host_harness.cpp, which loops over blocks and
// threads the way the GPU does.
// ``saved`` (H for backward, in the storage dtype, see nq_save_pre), ``v_seq`` and the OTTT trace
// (``trace0`` -> ``trace_last``: trace = trace_decay * trace + S per step) are optional (null).
template <typename S>
NQ_HD void nq_if_forward_tile(const NQNeuron& p, const S* x, const S* v0, S* spike, S* v_seq,
                              S* saved, S* v_last, const S* trace0, S* trace_last,
                              float trace_decay, nq_index_t base, nq_index_t lane_stride,
                              nq_index_t n, int steps) {
    float v[NQ_ILP], tr[NQ_ILP], xn[NQ_ILP];
    nq_index_t idx[NQ_ILP];
    bool ok[NQ_ILP];
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        idx[j] = base + (nq_index_t)j * lane_stride;
        ok[j] = idx[j] < n;
        v[j] = ok[j] ? nq_load(v0 + idx[j]) : 0.0f;
        tr[j] = (ok[j] && trace0) ? nq_load(trace0 + idx[j]) : 0.0f;
        xn[j] = (ok[j] && steps > 0) ? nq_load(x + idx[j]) : 0.0f;
    }
    nq_index_t row = 0;
    for (int t = 0; t < steps; ++t, row += n) {
        float xc[NQ_ILP];
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            xc[j] = xn[j];
            // issue the next step's loads before this step's arithmetic (more bytes in flight)
            xn[j] = (ok[j] && t + 1 < steps) ? nq_load(x + row + n + idx[j]) : 0.0f;
        }
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            if (!ok[j]) continue;
            float h = nq_charge(p, p.charge, p.recip_div, xc[j], v[j]);
            float s = nq_fire(p, h);
            v[j] = nq_reset(p, h, s);
            nq_index_t k = row + idx[j];
            nq_store(spike + k, s);
            if (v_seq) nq_store(v_seq + k, v[j]);
            if (saved) nq_save_pre(saved + k, h, p.v_th);
            if (trace0) tr[j] = tr[j] * trace_decay + s;
        }
    }
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        if (!ok[j]) continue;
        nq_store(v_last + idx[j], v[j]);
        if (trace0) nq_store(trace_last + idx[j], tr[j]);
    }
}

// Gradients in: g_spike [T,N], g_v_seq [T,N], g_v_last [N] (each may be null = zero).
// Gradients out: g_x [T,N], g_v0 [N] (may be null).
template <typename S>
NQ_HD void nq_if_backward_tile(const NQNeuron& p, const NQSurrogate& sg, const S* g_spike,
                               const S* g_v_seq, const S* g_v_last, const S* saved, S* g_x,
                               S* g_v0, nq_index_t base, nq_index_t lane_stride, nq_index_t n,
                               int steps) {
    float gv[NQ_ILP], gsn[NQ_ILP];
    nq_index_t idx[NQ_ILP];
    bool ok[NQ_ILP];
    const nq_index_t last = (nq_index_t)(steps - 1) * n;
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        idx[j] = base + (nq_index_t)j * lane_stride;
        ok[j] = idx[j] < n;
        gv[j] = (ok[j] && g_v_last) ? nq_load(g_v_last + idx[j]) : 0.0f;
        gsn[j] = (ok[j] && g_spike && steps > 0) ? nq_load(g_spike + last + idx[j]) : 0.0f;
    }
    nq_index_t row = last;
    for (int t = steps - 1; t >= 0; --t, row -= n) {
        float gs[NQ_ILP];
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            gs[j] = gsn[j];
            gsn[j] = (ok[j] && g_spike && t > 0) ? nq_load(g_spike + row - n + idx[j]) : 0.0f;
        }
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            if (!ok[j]) continue;
            nq_index_t k = row + idx[j];
            float h, xs, s;
            nq_load_pre(saved + k, p.v_th, h, xs, s);
            float g = gv[j];
            if (g_v_seq) g += nq_load(g_v_seq + k);
            float d = nq_surrogate_grad(sg.kind, sg.inner, sg, xs);
            float gh = nq_grad_h(p, h, s, d, g, gs[j]);
            nq_store(g_x + k, gh * p.dh_dx);
            gv[j] = gh * p.dh_dv;
        }
    }
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j)
        if (ok[j] && g_v0) nq_store(g_v0 + idx[j], gv[j]);
}

template <typename S>
NQ_HD void nq_saf_forward_tile(const NQSAF& p, const S* u_hat, const S* a0, S* a_seq, S* x_saved,
                               S* a_last, nq_index_t base, nq_index_t lane_stride, nq_index_t n,
                               int steps) {
    float a[NQ_ILP], un[NQ_ILP];
    nq_index_t idx[NQ_ILP];
    bool ok[NQ_ILP];
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        idx[j] = base + (nq_index_t)j * lane_stride;
        ok[j] = idx[j] < n;
        a[j] = ok[j] ? nq_load(a0 + idx[j]) : 0.0f;
        un[j] = (ok[j] && steps > 0) ? nq_load(u_hat + idx[j]) : 0.0f;
    }
    nq_index_t row = 0;
    for (int t = 0; t < steps; ++t, row += n) {
        float uc[NQ_ILP];
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            uc[j] = un[j];
            un[j] = (ok[j] && t + 1 < steps) ? nq_load(u_hat + row + n + idx[j]) : 0.0f;
        }
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            if (!ok[j]) continue;
            float xx = nq_saf_step(p, p.recip_div, uc[j], a[j]);
            nq_index_t k = row + idx[j];
            nq_store(a_seq + k, a[j]);
            if (x_saved) nq_store(x_saved + k, xx);  // sign kept by rounding; only sg'(X) is needed
        }
    }
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j)
        if (ok[j]) nq_store(a_last + idx[j], a[j]);
}

template <typename S>
NQ_HD void nq_saf_backward_tile(const NQSAF& p, const NQSurrogate& sg, const S* g_a_seq,
                                const S* g_a_last, const S* x_saved, S* g_u, S* g_a0,
                                nq_index_t base, nq_index_t lane_stride, nq_index_t n, int steps) {
    float carry[NQ_ILP];
    nq_index_t idx[NQ_ILP];
    bool ok[NQ_ILP];
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        idx[j] = base + (nq_index_t)j * lane_stride;
        ok[j] = idx[j] < n;
        carry[j] = (ok[j] && g_a_last) ? nq_load(g_a_last + idx[j]) : 0.0f;
    }
    nq_index_t row = (nq_index_t)(steps - 1) * n;
    for (int t = steps - 1; t >= 0; --t, row -= n) {
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            if (!ok[j]) continue;
            nq_index_t k = row + idx[j];
            float g = carry[j];
            if (g_a_seq) g += nq_load(g_a_seq + k);
            float d = nq_surrogate_grad(sg.kind, sg.inner, sg, nq_load(x_saved + k));
            nq_store(g_u + k, g * d * p.dd_du);
            carry[j] = p.detach_state ? 0.0f : g * p.lam * (1.0f - p.v_th * d);
        }
    }
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j)
        if (ok[j] && g_a0) nq_store(g_a0 + idx[j], carry[j]);
}

// Elementwise surrogate backward g_x = g * sg'(x) (S2NNNode: its reduced gradient costs t_ref
// elementwise steps in torch, one pass here).
template <typename S>
NQ_HD void nq_surrogate_backward_tile(const NQSurrogate& sg, const S* x, const S* g, S* g_x,
                                      nq_index_t base, nq_index_t lane_stride, nq_index_t n) {
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        nq_index_t i = base + (nq_index_t)j * lane_stride;
        if (i < n) nq_store(g_x + i, nq_load(g + i) * nq_surrogate_grad(sg.kind, sg.inner, sg, nq_load(x + i)));
    }
}

// ---- generated neurons: tiles over a traced step (neuroq/ops/codegen.py) ----------------------
// NEURON is the emitted struct NQStep: NEURON::NSTATE states per neuron, NEURON::forward updates them
// in place and returns the spike, NEURON::backward is the step's vector-Jacobian product.
// Layouts: st0 / last / g_last / g_st0 [NSTATE, N]; x, spike, g_x [T, N]; the kept sequences
// seq / g_seq [popcount(mask), T, N] (state i, if bit i of the mask is set, in slot "set bits below
// i"); saved [NSAVE, T, N] fp32: per step the values NEURON::forward_save keeps, what backward
// recomputes the step's vector-Jacobian product from (the fewest: H alone for a LIF; no X is read).
// value i of one neuron and step in a [NSAVE, T, N] buffer (p points at element (0, t, n))
struct nq_plane_col {
    float* p;
    nq_index_t plane;
    NQ_HD_MEMBER float& operator[](int i) const { return p[(nq_index_t)i * plane]; }
};
struct nq_cplane_col {
    const float* p;
    nq_index_t plane;
    NQ_HD_MEMBER float operator[](int i) const { return p[(nq_index_t)i * plane]; }
};

template <typename S, typename NEURON>
NQ_HD void nq_step_forward_tile(const float* c, const S* x, const S* st0, S* spike, S* seq, int seq_mask,
                                float* saved, S* last, nq_index_t base, nq_index_t lane_stride,
                                nq_index_t n, int steps) {
    enum { K = NEURON::NSTATE };
    float st[NQ_ILP][K], xn[NQ_ILP];
    nq_index_t idx[NQ_ILP];
    bool ok[NQ_ILP];
    const nq_index_t plane = (nq_index_t)steps * n;
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        idx[j] = base + (nq_index_t)j * lane_stride;
        ok[j] = idx[j] < n;
        for (int i = 0; i < K; ++i) st[j][i] = ok[j] ? nq_load(st0 + (nq_index_t)i * n + idx[j]) : 0.0f;
        xn[j] = (ok[j] && steps > 0) ? nq_load(x + idx[j]) : 0.0f;
    }
    nq_index_t row = 0;
    for (int t = 0; t < steps; ++t, row += n) {
        float xc[NQ_ILP];
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            xc[j] = xn[j];
            xn[j] = (ok[j] && t + 1 < steps) ? nq_load(x + row + n + idx[j]) : 0.0f;
        }
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            if (!ok[j]) continue;
            nq_index_t k = row + idx[j];
            nq_store(spike + k, saved ? NEURON::forward_save(c, xc[j], st[j], nq_plane_col{saved + k, plane})
                                      : NEURON::forward(c, xc[j], st[j]));
            if (seq) {
                int slot = 0;
                for (int i = 0; i < K; ++i)
                    if ((seq_mask >> i) & 1) nq_store(seq + (nq_index_t)(slot++) * plane + k, st[j][i]);
            }
        }
    }
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j)
        if (ok[j])
            for (int i = 0; i < K; ++i) nq_store(last + (nq_index_t)i * n + idx[j], st[j][i]);
}

// Gradients in: g_spike [T,N], g_seq (mask), g_last [NSTATE,N] (each may be null = zero).
// Gradients out: g_x [T,N], g_st0 [NSTATE,N] (may be null).
template <typename S, typename NEURON>
NQ_HD void nq_step_backward_tile(const float* c, const NQSurrogate* sg, const float* saved,
                                 const S* g_spike, const S* g_seq, int g_seq_mask, const S* g_last, S* g_x,
                                 S* g_st0, nq_index_t base, nq_index_t lane_stride, nq_index_t n, int steps) {
    enum { K = NEURON::NSTATE };
    float g[NQ_ILP][K];
    nq_index_t idx[NQ_ILP];
    bool ok[NQ_ILP];
    const nq_index_t plane = (nq_index_t)steps * n;
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j) {
        idx[j] = base + (nq_index_t)j * lane_stride;
        ok[j] = idx[j] < n;
        for (int i = 0; i < K; ++i)
            g[j][i] = (ok[j] && g_last) ? nq_load(g_last + (nq_index_t)i * n + idx[j]) : 0.0f;
    }
    nq_index_t row = (nq_index_t)(steps - 1) * n;
    for (int t = steps - 1; t >= 0; --t, row -= n) {
        NQ_UNROLL
        for (int j = 0; j < NQ_ILP; ++j) {
            if (!ok[j]) continue;
            nq_index_t k = row + idx[j];
            if (g_seq) {
                int slot = 0;
                for (int i = 0; i < K; ++i)
                    if ((g_seq_mask >> i) & 1) g[j][i] += nq_load(g_seq + (nq_index_t)(slot++) * plane + k);
            }
            float gs = g_spike ? nq_load(g_spike + k) : 0.0f;
            nq_store(g_x + k, NEURON::backward(c, sg, nq_cplane_col{saved + k, plane}, gs, g[j]));
        }
    }
    NQ_UNROLL
    for (int j = 0; j < NQ_ILP; ++j)
        if (ok[j] && g_st0)
            for (int i = 0; i < K; ++i) nq_store(g_st0 + (nq_index_t)i * n + idx[j], g[j][i]);
}

#endif  // NEUROQ_OPS_KERNELS_CUH
