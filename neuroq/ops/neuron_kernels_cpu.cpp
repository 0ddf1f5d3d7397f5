// neuroq: CPU entry points of the fused multi-step kernels (backend='cpu').  The per-neuron math
// is kernels.cuh, the very code the CUDA kernels run; here the loop shape is the CPU's:
//
//   parallel (OpenMP) over blocks of B neurons
//     for t in 0..T-1                         (time outside: the block's state stays in L1)
//       simd for j in block                   (the compiler vectorises over neurons)
//
// Backward saves nothing in forward: it recomputes the block's forward from X (bit-identical:
// the same code) into an L2-sized scratch of H values, then runs BPTT in reverse over the block.
// Traffic per step of one neuron: forward reads X and writes S; backward reads X and dL/dS and
// writes dL/dX -- no H is written to or read from memory.
//
// Built by neuroq/ops/build.py once per (storage dtype, compiler, flags) as two translation units of
// this one file, linked into one library (-O3 -fopenmp -march=native [-mprefer-vector-width=512] -DNQ_STORAGE=float|nq_f16|nq_bf16):
//   NQ_PART=1  -ffp-contract=off   everything a spike or a state depends on (forward, the backward's
//                                  recompute, the entry points): bit-identical to torch's arithmetic;
//   NQ_PART=2  -ffp-contract=fast  the reverse-time gradient loops only (FMA allowed: gradients are
//                                  held to 1e-5, and the spikes they read come from part 1's H).
// Without NQ_PART both parts are compiled in one unit (all exact), as the vectorisation test does.
#include "kernels.cuh"
#include "stream_cpu.h"

#include <stdint.h>
#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifndef NQ_STORAGE
#define NQ_STORAGE float
#endif
typedef NQ_STORAGE S;

#define NQ_BLOCK_MAX 16384       // neurons per block (state buffers on the stack: 64 KiB each)
#define NQ_SCRATCH_BYTES 524288  // backward: steps * B * 4 bytes of H per block (within L2)
#define NQ_HIDDEN __attribute__((visibility("hidden")))
#define NQ_MIN_PARALLEL 32768    // below this many elements (T*N) one thread does all
#ifndef NQ_T_INNER_MAX
#define NQ_T_INNER_MAX 32        // IF/LIF forward: time inside tiles of NQ_TILE neurons up to this many steps
#endif
#define NQ_TILE 128

#define NQ_RESTRICT __restrict__

static int nq_block_size(nq_index_t n, int nthreads, int steps_scratch) {
    nq_index_t per = (n + nthreads - 1) / (nthreads > 0 ? nthreads : 1);
    nq_index_t b = ((per + 15) / 16) * 16;
    if (b > NQ_BLOCK_MAX) b = NQ_BLOCK_MAX;
    if (steps_scratch > 0) {
        nq_index_t lim = (NQ_SCRATCH_BYTES / 4) / steps_scratch;
        lim = (lim / 16) * 16;
        if (b > lim) b = lim;
    }
    if (b < 16) b = 16;
    return (int)b;
}

static int nq_threads(nq_index_t elements, int nthreads) {
    if (nthreads < 1 || elements < NQ_MIN_PARALLEL) return 1;
    return nthreads;
}

#define NQ_SG_DISPATCH(CALL)                                                              \
    switch (sg.kind) {                                                                    \
        case NQ_SG_SIGMOID: CALL(NQ_SG_SIGMOID, 0); break;                                \
        case NQ_SG_ATAN: CALL(NQ_SG_ATAN, 0); break;                                      \
        case NQ_SG_PIECEWISE_QUADRATIC: CALL(NQ_SG_PIECEWISE_QUADRATIC, 0); break;        \
        case NQ_SG_RECT: CALL(NQ_SG_RECT, 0); break;                                      \
        case NQ_SG_S2NN:                                                                  \
            switch (sg.inner) {                                                           \
                case NQ_SG_SIGMOID: CALL(NQ_SG_S2NN, NQ_SG_SIGMOID); break;               \
                case NQ_SG_ATAN: CALL(NQ_SG_S2NN, NQ_SG_ATAN); break;                     \
                default: CALL(NQ_SG_S2NN, NQ_SG_RECT); break;                             \
            }                                                                             \
            break;                                                                        \
        default: break;                                                                   \
    }

#if NQ_PART != 2  // ================= part 1: exact (-ffp-contract=off) ===================

// defined in part 2
NQ_HIDDEN void nq_if_reverse(const NQNeuron& p, const NQSurrogate& sg, const float* hs, const S* g_spike,
                             const S* g_v_seq, const S* g_v_last, S* g_x, S* g_v0, nq_index_t n, int steps,
                             nq_index_t i0, int len, int ld);
NQ_HIDDEN void nq_saf_reverse(const NQSAF& p, const NQSurrogate& sg, const float* xs, const S* g_a_seq,
                              const S* g_a_last, S* g_u, S* g_a0, nq_index_t n, int steps, nq_index_t i0,
                              int len, int ld);

// ---- integrate-and-fire family --------------------------------------------------------------
// Short sequences (steps <= NQ_T_INNER_MAX) run time inside tiles of NQ_TILE neurons, whose potentials
// stay in L1 over all steps; longer ones one tile = the block (time outside).  Outputs of
// NQ_STREAM_MIN_BYTES or more go out through an L1 chunk buffer with streaming stores (stream_cpu.h).
// The arithmetic is the same in every case (bit-identical outputs).
template <int CHARGE, int RECIP, bool VSEQ, bool TRACE>
static void if_forward_block(const NQNeuron p, const S* NQ_RESTRICT x, const S* NQ_RESTRICT v0,
                             S* NQ_RESTRICT spike, S* NQ_RESTRICT v_seq, S* NQ_RESTRICT v_last,
                             const S* NQ_RESTRICT trace0, S* NQ_RESTRICT trace_last,
                             const float trace_decay, const nq_index_t n, const int steps,
                             const nq_index_t i0, const int len, const bool stream) {
    alignas(64) float v[NQ_BLOCK_MAX];
    alignas(64) float tr[TRACE ? NQ_BLOCK_MAX : 1];
    for (int j = 0; j < len; ++j) v[j] = nq_load(v0 + i0 + j);
    if (TRACE)
        for (int j = 0; j < len; ++j) tr[j] = nq_load(trace0 + i0 + j);
    const int tile = steps <= NQ_T_INNER_MAX ? NQ_TILE : len;
    for (int j0 = 0; j0 < len; j0 += tile) {
        const int j1 = len - j0 < tile ? len : j0 + tile;
        for (int t = 0; t < steps; ++t) {
            const nq_index_t off = (nq_index_t)t * n + i0;
            const S* NQ_RESTRICT xt = x + off;
            S* NQ_RESTRICT st = spike + off;
            S* NQ_RESTRICT vt = VSEQ ? v_seq + off : 0;
            if (!stream) {
#pragma omp simd
                for (int j = j0; j < j1; ++j) {
                    float h = nq_charge(p, CHARGE, RECIP, nq_load(xt + j), v[j]);
                    float s = nq_fire(p, h);
                    float vn = nq_reset(p, h, s);
                    v[j] = vn;
                    nq_store(st + j, s);
                    if (VSEQ) nq_store(vt + j, vn);
                    if (TRACE) tr[j] = tr[j] * trace_decay + s;
                }
                continue;
            }
            alignas(64) S os[NQ_STREAM_CHUNK];
            alignas(64) S ov[VSEQ ? NQ_STREAM_CHUNK : 1];
            for (int c0 = j0; c0 < j1; c0 += NQ_STREAM_CHUNK) {
                const int m = j1 - c0 < NQ_STREAM_CHUNK ? j1 - c0 : NQ_STREAM_CHUNK;
#pragma omp simd
                for (int j = 0; j < m; ++j) {
                    float h = nq_charge(p, CHARGE, RECIP, nq_load(xt + c0 + j), v[c0 + j]);
                    float s = nq_fire(p, h);
                    float vn = nq_reset(p, h, s);
                    v[c0 + j] = vn;
                    nq_store(os + j, s);
                    if (VSEQ) nq_store(ov + j, vn);
                    if (TRACE) tr[c0 + j] = tr[c0 + j] * trace_decay + s;
                }
                nq_stream_bytes(st + c0, os, (size_t)m * sizeof(S));
                if (VSEQ) nq_stream_bytes(vt + c0, ov, (size_t)m * sizeof(S));
            }
        }
    }
    for (int j = 0; j < len; ++j) nq_store(v_last + i0 + j, v[j]);
    if (TRACE)
        for (int j = 0; j < len; ++j) nq_store(trace_last + i0 + j, tr[j]);
}

template <int CHARGE, int RECIP>
static void if_recompute_block(const NQNeuron p, const S* NQ_RESTRICT x, const S* NQ_RESTRICT v0,
                               float* NQ_RESTRICT hs, const nq_index_t n, const int steps,
                               const nq_index_t i0, const int len, const int ld) {
    alignas(64) float v[NQ_BLOCK_MAX];
    for (int j = 0; j < len; ++j) v[j] = nq_load(v0 + i0 + j);
    for (int t = 0; t < steps; ++t) {
        const S* NQ_RESTRICT xt = x + (nq_index_t)t * n + i0;
        float* NQ_RESTRICT ht = hs + (nq_index_t)t * ld;
#pragma omp simd
        for (int j = 0; j < len; ++j) {
            float h = nq_charge(p, CHARGE, RECIP, nq_load(xt + j), v[j]);
            float s = nq_fire(p, h);
            v[j] = nq_reset(p, h, s);
            ht[j] = h;
        }
    }
}

// ---- SAF --------------------------------------------------------------------------------------
template <bool DI, int RECIP>
static void saf_forward_block(const NQSAF p, const S* NQ_RESTRICT u, const S* NQ_RESTRICT a0,
                              S* NQ_RESTRICT a_seq, S* NQ_RESTRICT a_last, float* NQ_RESTRICT xs,
                              const nq_index_t n, const int steps, const nq_index_t i0,
                              const int len, const int ld) {
    alignas(64) float a[NQ_BLOCK_MAX];
    NQSAF q = p;
    q.decay_input = DI ? 1 : 0;
    for (int j = 0; j < len; ++j) a[j] = nq_load(a0 + i0 + j);
    for (int t = 0; t < steps; ++t) {
        const nq_index_t off = (nq_index_t)t * n + i0;
        const S* NQ_RESTRICT ut = u + off;
        if (xs) {  // backward recompute: X into the scratch, no output written
            float* NQ_RESTRICT xt = xs + (nq_index_t)t * ld;
#pragma omp simd
            for (int j = 0; j < len; ++j) {
                float aj = a[j];
                xt[j] = nq_saf_step(q, RECIP, nq_load(ut + j), aj);
                a[j] = aj;
            }
        } else {
            S* NQ_RESTRICT at = a_seq + off;
#pragma omp simd
            for (int j = 0; j < len; ++j) {
                float aj = a[j];
                nq_saf_step(q, RECIP, nq_load(ut + j), aj);
                a[j] = aj;
                nq_store(at + j, aj);
            }
        }
    }
    if (a_last)
        for (int j = 0; j < len; ++j) nq_store(a_last + i0 + j, a[j]);
}

// ---- run-time -> compile-time dispatch ------------------------------------------------------
// recip_div on the CPU only for a power-of-two tau, where a * (1/tau) == a / tau exactly (the
// reciprocal is exact), so the forward stays bit-identical to torch's true division, and cheaper.
#define NQ_CHARGE_DISPATCH(CALL)                                                       \
    switch (p.charge * 2 + (p.recip_div ? 1 : 0)) {                                    \
        case 2 * NQ_CHARGE_LIF_DI0: CALL(NQ_CHARGE_LIF_DI0, 0); break;                 \
        case 2 * NQ_CHARGE_LIF_DI0 + 1: CALL(NQ_CHARGE_LIF_DI0, 1); break;             \
        case 2 * NQ_CHARGE_LIF_DI: CALL(NQ_CHARGE_LIF_DI, 0); break;                   \
        case 2 * NQ_CHARGE_LIF_DI + 1: CALL(NQ_CHARGE_LIF_DI, 1); break;               \
        case 2 * NQ_CHARGE_LIF_NODI0:                                                  \
        case 2 * NQ_CHARGE_LIF_NODI0 + 1: CALL(NQ_CHARGE_LIF_NODI0, 0); break;         \
        case 2 * NQ_CHARGE_LIF_NODI: CALL(NQ_CHARGE_LIF_NODI, 0); break;               \
        case 2 * NQ_CHARGE_LIF_NODI + 1: CALL(NQ_CHARGE_LIF_NODI, 1); break;           \
        default: CALL(NQ_CHARGE_IF, 0); break;                                         \
    }

template <int CHARGE, int RECIP>
static void if_forward_any(const NQNeuron& p, const S* x, const S* v0, S* spike, S* v_seq,
                           S* v_last, const S* trace0, S* trace_last, float trace_decay,
                           nq_index_t n, int steps, nq_index_t i0, int len, bool stream) {
    if (v_seq) {
        if (trace0) if_forward_block<CHARGE, RECIP, true, true>(p, x, v0, spike, v_seq, v_last, trace0, trace_last, trace_decay, n, steps, i0, len, stream);
        else if_forward_block<CHARGE, RECIP, true, false>(p, x, v0, spike, v_seq, v_last, trace0, trace_last, trace_decay, n, steps, i0, len, stream);
    } else {
        if (trace0) if_forward_block<CHARGE, RECIP, false, true>(p, x, v0, spike, v_seq, v_last, trace0, trace_last, trace_decay, n, steps, i0, len, stream);
        else if_forward_block<CHARGE, RECIP, false, false>(p, x, v0, spike, v_seq, v_last, trace0, trace_last, trace_decay, n, steps, i0, len, stream);
    }
}

extern "C" {

// Sizes of the structs and of the storage type, checked against ctypes by neuroq/ops/abi.py.
void nq_cpu_abi(int* out) {
    out[0] = (int)sizeof(NQNeuron);
    out[1] = (int)sizeof(NQSurrogate);
    out[2] = (int)sizeof(NQSAF);
    out[3] = (int)sizeof(S);
    out[4] = NQ_BLOCK_MAX;
}

// Ask for transparent huge pages on a fresh output buffer (before its first touch): a 64 MiB
// tensor then takes 32 page faults instead of 16384 (what torch does for every allocation with
// THP_MEM_ALLOC_ENABLE=1).  Only whole 2 MiB pages inside [p, p + bytes) are advised; returns 0 on
// success, -1 where the OS has no such advice.
int nq_cpu_advise_huge(void* p, long long bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + (uintptr_t)bytes) & ~(huge - 1);
    if (b <= a) return 0;
    return madvise((void*)a, (size_t)(b - a), MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
    return -1;
#endif
}

void nq_cpu_if_forward(const NQNeuron* pp, const S* x, const S* v0, S* spike, S* v_seq, S* v_last,
                       const S* trace0, S* trace_last, float trace_decay, long long n, int steps,
                       int nthreads) {
    const NQNeuron p = *pp;
    const int nt = nq_threads(n * (nq_index_t)(steps > 0 ? steps : 1), nthreads);
    const int B = nq_block_size(n, nt, 0);
    const nq_index_t nblocks = (n + B - 1) / B;
    const bool stream = nq_stream_wanted(n * (nq_index_t)(steps > 0 ? steps : 0), sizeof(S));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (nq_index_t b = 0; b < nblocks; ++b) {
            const nq_index_t i0 = b * B;
            const int len = (int)(n - i0 < B ? n - i0 : B);
#define NQ_CALL(C, R) if_forward_any<C, R>(p, x, v0, spike, v_seq, v_last, trace0, trace_last, trace_decay, n, steps, i0, len, stream)
            NQ_CHARGE_DISPATCH(NQ_CALL)
#undef NQ_CALL
        }
        if (stream) nq_stream_fence();
    }
}

// Backward of nq_cpu_if_forward from its inputs (x, v0): g_spike must not be null (pass zeros).
void nq_cpu_if_backward(const NQNeuron* pp, const NQSurrogate* sgp, const S* x, const S* v0,
                        const S* g_spike, const S* g_v_seq, const S* g_v_last, S* g_x, S* g_v0,
                        long long n, int steps, int nthreads) {
    const NQNeuron p = *pp;
    const NQSurrogate sg = *sgp;
    if (steps <= 0) {
        if (g_v0)
            for (nq_index_t i = 0; i < n; ++i) nq_store(g_v0 + i, g_v_last ? nq_load(g_v_last + i) : 0.0f);
        return;
    }
    const int nt = nq_threads(n * (nq_index_t)steps, nthreads);
    const int B = nq_block_size(n, nt, steps);
    const nq_index_t nblocks = (n + B - 1) / B;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float* hs = (float*)aligned_alloc(64, (((size_t)steps * B * sizeof(float) + 63) / 64) * 64);
#pragma omp for schedule(static)
        for (nq_index_t b = 0; b < nblocks; ++b) {
            const nq_index_t i0 = b * B;
            const int len = (int)(n - i0 < B ? n - i0 : B);
#define NQ_CALL(C, R) if_recompute_block<C, R>(p, x, v0, hs, n, steps, i0, len, B)
            NQ_CHARGE_DISPATCH(NQ_CALL)
#undef NQ_CALL
            nq_if_reverse(p, sg, hs, g_spike, g_v_seq, g_v_last, g_x, g_v0, n, steps, i0, len, B);
        }
        free(hs);
    }
}

void nq_cpu_saf_forward(const NQSAF* pp, const S* u, const S* a0, S* a_seq, S* a_last, long long n,
                        int steps, int nthreads) {
    const NQSAF p = *pp;
    const int nt = nq_threads(n * (nq_index_t)(steps > 0 ? steps : 1), nthreads);
    const int B = nq_block_size(n, nt, 0);
    const nq_index_t nblocks = (n + B - 1) / B;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (nq_index_t b = 0; b < nblocks; ++b) {
        const nq_index_t i0 = b * B;
        const int len = (int)(n - i0 < B ? n - i0 : B);
        if (!p.decay_input) saf_forward_block<false, 0>(p, u, a0, a_seq, a_last, 0, n, steps, i0, len, 0);
        else if (p.recip_div) saf_forward_block<true, 1>(p, u, a0, a_seq, a_last, 0, n, steps, i0, len, 0);
        else saf_forward_block<true, 0>(p, u, a0, a_seq, a_last, 0, n, steps, i0, len, 0);
    }
}

// Backward of nq_cpu_saf_forward from its inputs (u, a0): g_a_seq must not be null (pass zeros).
void nq_cpu_saf_backward(const NQSAF* pp, const NQSurrogate* sgp, const S* u, const S* a0,
                         const S* g_a_seq, const S* g_a_last, S* g_u, S* g_a0, long long n,
                         int steps, int nthreads) {
    const NQSAF p = *pp;
    const NQSurrogate sg = *sgp;
    if (steps <= 0) {
        if (g_a0)
            for (nq_index_t i = 0; i < n; ++i) nq_store(g_a0 + i, g_a_last ? nq_load(g_a_last + i) : 0.0f);
        return;
    }
    const int nt = nq_threads(n * (nq_index_t)steps, nthreads);
    const int B = nq_block_size(n, nt, steps);
    const nq_index_t nblocks = (n + B - 1) / B;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float* xs = (float*)aligned_alloc(64, (((size_t)steps * B * sizeof(float) + 63) / 64) * 64);
#pragma omp for schedule(static)
        for (nq_index_t b = 0; b < nblocks; ++b) {
            const nq_index_t i0 = b * B;
            const int len = (int)(n - i0 < B ? n - i0 : B);
            if (!p.decay_input) saf_forward_block<false, 0>(p, u, a0, 0, 0, xs, n, steps, i0, len, B);
            else if (p.recip_div) saf_forward_block<true, 1>(p, u, a0, 0, 0, xs, n, steps, i0, len, B);
            else saf_forward_block<true, 0>(p, u, a0, 0, 0, xs, n, steps, i0, len, B);
            nq_saf_reverse(p, sg, xs, g_a_seq, g_a_last, g_u, g_a0, n, steps, i0, len, B);
        }
        free(xs);
    }
}

}  // extern "C"

#endif  // part 1

#if NQ_PART != 1  // ================= part 2: gradients (-ffp-contract=fast) ==================
template <int KIND, int INNER, bool GVS>
static void if_reverse_block(const NQNeuron p, const NQSurrogate sg, const float* NQ_RESTRICT hs,
                             const S* NQ_RESTRICT g_spike, const S* NQ_RESTRICT g_v_seq,
                             const S* NQ_RESTRICT g_v_last, S* NQ_RESTRICT g_x,
                             S* NQ_RESTRICT g_v0, const nq_index_t n, const int steps,
                             const nq_index_t i0, const int len, const int ld) {
    alignas(64) float gv[NQ_BLOCK_MAX];
    if (g_v_last)
        for (int j = 0; j < len; ++j) gv[j] = nq_load(g_v_last + i0 + j);
    else
        for (int j = 0; j < len; ++j) gv[j] = 0.0f;
    for (int t = steps - 1; t >= 0; --t) {
        const nq_index_t off = (nq_index_t)t * n + i0;
        const float* NQ_RESTRICT ht = hs + (nq_index_t)t * ld;
        const S* NQ_RESTRICT gst = g_spike + off;
        const S* NQ_RESTRICT gvt = GVS ? g_v_seq + off : 0;
        S* NQ_RESTRICT gxt = g_x + off;
#pragma omp simd
        for (int j = 0; j < len; ++j) {
            float h = ht[j];
            float xs = h - p.v_th;
            float s = xs >= 0.0f ? 1.0f : 0.0f;
            float d = nq_surrogate_grad(KIND, INNER, sg, xs);
            float g = gv[j];
            if (GVS) g += nq_load(gvt + j);
            float gh = nq_grad_h(p, h, s, d, g, nq_load(gst + j));
            nq_store(gxt + j, gh * p.dh_dx);
            gv[j] = gh * p.dh_dv;
        }
    }
    if (g_v0)
        for (int j = 0; j < len; ++j) nq_store(g_v0 + i0 + j, gv[j]);
}

template <int KIND, int INNER>
static void saf_reverse_block(const NQSAF p, const NQSurrogate sg, const float* NQ_RESTRICT xs,
                              const S* NQ_RESTRICT g_a_seq, const S* NQ_RESTRICT g_a_last,
                              S* NQ_RESTRICT g_u, S* NQ_RESTRICT g_a0, const nq_index_t n,
                              const int steps, const nq_index_t i0, const int len, const int ld) {
    alignas(64) float carry[NQ_BLOCK_MAX];
    if (g_a_last)
        for (int j = 0; j < len; ++j) carry[j] = nq_load(g_a_last + i0 + j);
    else
        for (int j = 0; j < len; ++j) carry[j] = 0.0f;
    for (int t = steps - 1; t >= 0; --t) {
        const nq_index_t off = (nq_index_t)t * n + i0;
        const float* NQ_RESTRICT xt = xs + (nq_index_t)t * ld;
        const S* NQ_RESTRICT gat = g_a_seq + off;
        S* NQ_RESTRICT gut = g_u + off;
#pragma omp simd
        for (int j = 0; j < len; ++j) {
            float g = carry[j] + nq_load(gat + j);
            float d = nq_surrogate_grad(KIND, INNER, sg, xt[j]);
            nq_store(gut + j, g * d * p.dd_du);
            carry[j] = p.detach_state ? 0.0f : g * p.lam * (1.0f - p.v_th * d);
        }
    }
    if (g_a0)
        for (int j = 0; j < len; ++j) nq_store(g_a0 + i0 + j, carry[j]);
}

template <int KIND, int INNER>
static void surrogate_backward_block(const NQSurrogate sg, const S* NQ_RESTRICT x,
                                     const S* NQ_RESTRICT g, S* NQ_RESTRICT g_x,
                                     const nq_index_t i0, const int len) {
#pragma omp simd
    for (int j = 0; j < len; ++j)
        nq_store(g_x + i0 + j, nq_load(g + i0 + j) * nq_surrogate_grad(KIND, INNER, sg, nq_load(x + i0 + j)));
}

NQ_HIDDEN void nq_if_reverse(const NQNeuron& p, const NQSurrogate& sg, const float* hs, const S* g_spike,
                             const S* g_v_seq, const S* g_v_last, S* g_x, S* g_v0, nq_index_t n, int steps,
                             nq_index_t i0, int len, int ld) {
#define NQ_CALL(K, I)                                                                                   \
    if (g_v_seq) if_reverse_block<K, I, true>(p, sg, hs, g_spike, g_v_seq, g_v_last, g_x, g_v0, n, steps, i0, len, ld); \
    else if_reverse_block<K, I, false>(p, sg, hs, g_spike, g_v_seq, g_v_last, g_x, g_v0, n, steps, i0, len, ld)
    NQ_SG_DISPATCH(NQ_CALL)
#undef NQ_CALL
}

NQ_HIDDEN void nq_saf_reverse(const NQSAF& p, const NQSurrogate& sg, const float* xs, const S* g_a_seq,
                              const S* g_a_last, S* g_u, S* g_a0, nq_index_t n, int steps, nq_index_t i0,
                              int len, int ld) {
#define NQ_CALL(K, I) saf_reverse_block<K, I>(p, sg, xs, g_a_seq, g_a_last, g_u, g_a0, n, steps, i0, len, ld)
    NQ_SG_DISPATCH(NQ_CALL)
#undef NQ_CALL
}

extern "C" void nq_cpu_surrogate_backward(const NQSurrogate* sgp, const S* x, const S* g, S* g_x, long long n,
                               int nthreads) {
    const NQSurrogate sg = *sgp;
    const int nt = nq_threads(n, nthreads);
    const int B = NQ_BLOCK_MAX;
    const nq_index_t nblocks = (n + B - 1) / B;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (nq_index_t b = 0; b < nblocks; ++b) {
        const nq_index_t i0 = b * B;
        const int len = (int)(n - i0 < B ? n - i0 : B);
#define NQ_CALL(K, I) surrogate_backward_block<K, I>(sg, x, g, g_x, i0, len)
        NQ_SG_DISPATCH(NQ_CALL)
#undef NQ_CALL
    }
}


#endif  // part 2
