// neuroq/ops/step_kernels_cpu.cpp -- the CPU loops of a generated neuron (backend='cpu'): the
// loop shape of neuron_kernels_cpu.cpp over the per-neuron step that neuroq/ops/codegen.py emits
// from a neuron's own pure step as `struct NQStep` (forward: states in place, returns the spike;
// backward: the step's vector-Jacobian product).  The generated source is
//
//   #include "kernels.cuh"
//   struct NQStep { ... };                    // emitted
//   #include "step_kernels_cpu.cpp"           // this file
//
// and neuroq/ops/generated.py compiles it once per (step structure, storage dtype, compiler, CPU) with
// the flags of the hand-written kernels, cached like them, as the same two translation units:
//   NQ_PART=1  -ffp-contract=off   the forward and the backward's recompute (forward_save): spikes and
//                                  states bit-identical to torch's arithmetic;
//   NQ_PART=2  -ffp-contract=fast  the reverse-time loop (step_reverse_block: NQStep::backward, FMA
//                                  allowed; every value a comparison there reads is kept by forward_save
//                                  or recomputed without a contractible multiply-add, codegen.save_set).
// Without NQ_PART both parts are compiled in one unit (all exact), as the vectorisation test does.
//
//   parallel (OpenMP) over blocks of B neurons
//     for t in 0..T-1                   (time outside: the block's NSTATE states stay in L1/L2)
//       simd for j in block             (the compiler vectorises over neurons)
//
// A forward of at most NQ_STEP_T_INNER_MAX steps instead runs time inside tiles of NQ_STEP_TILE
// neurons (step_forward_block's tiles: a tile's states stay in L1 over all steps, as in an unrolled loop).
// On the development CPU the tiles were faster than the blocks up to T = 32 and slower at T = 64, where
// the blocks stay (benchmarks/generated_kernels.py times both sizes).
//
// Backward saves nothing in forward: per block it recomputes the forward from X and the initial
// states (NQStep::forward_save) into an L2-sized scratch of the NSAVE values per neuron and step the
// step's vector-Jacobian product is recomputed from (codegen.save_set: the fewest, e.g. H alone for a
// LIF), then runs that product in reverse time.  Traffic per step of one neuron: forward reads X and
// writes S; backward reads X and dL/dS and writes dL/dX.  Outputs of NQ_STREAM_MIN_BYTES or more
// (S, the kept state sequences, dL/dX) are written with streaming stores (stream_cpu.h): the
// arithmetic is the same, each chunk of a block's step goes through an L1 buffer.
#include "kernels.cuh"
#include "stream_cpu.h"

#include <stdint.h>
#include <stdlib.h>

#ifndef NQ_STORAGE
#define NQ_STORAGE float
#endif
typedef NQ_STORAGE S;

#define NQ_K ((int)NQStep::NSTATE)
#ifndef NQ_STEP_FLOATS
#define NQ_STEP_FLOATS 16384                 // state floats per block, all states together
#endif
#define NQ_STEP_BMAX (NQ_STEP_FLOATS / NQ_K)  // neurons per block
#define NQ_STEP_SCRATCH_BYTES 524288          // backward: steps * NSAVE * B * 4 bytes per block
#define NQ_STEP_MIN_PARALLEL 32768            // below this many elements (T*N) one thread does all
#ifndef NQ_STEP_T_INNER_MAX
#define NQ_STEP_T_INNER_MAX 32                // forward with time inside tiles up to this many steps
#endif
#ifndef NQ_STEP_TILE
#define NQ_STEP_TILE 128                      // neurons per tile of that forward
#endif
#define NQ_RESTRICT __restrict__
#define NQ_NCONST_ALLOC (NQStep::NCONST > 0 ? (int)NQStep::NCONST : 1)
#define NQ_NSG_ALLOC (NQStep::NSG > 0 ? (int)NQStep::NSG : 1)
#define NQ_NSAVE_ALLOC (NQStep::NSAVE > 0 ? (int)NQStep::NSAVE : 1)

// The states of neuron j of a block, as NQStep sees them: st[i] is element (i, j) of a [NSTATE, ld]
// buffer.  (An accessor rather than a private array: the SIMD loop then has no inner loop and no
// per-lane array, and vectorises.)
template <int LD>
struct nq_col {
    float* NQ_RESTRICT p;
    int j;
    float& operator[](int i) const { return p[i * LD + j]; }
};
struct nq_ccol {
    const float* NQ_RESTRICT p;
    int ld, j;
    float operator[](int i) const { return p[i * ld + j]; }
};
struct nq_wcol {
    float* NQ_RESTRICT p;
    int ld, j;
    float& operator[](int i) const { return p[i * ld + j]; }
};

static int nq_step_block(nq_index_t n, int nthreads, int steps_scratch) {
    nq_index_t per = (n + nthreads - 1) / (nthreads > 0 ? nthreads : 1);
    nq_index_t b = ((per + 15) / 16) * 16;
    if (b > NQ_STEP_BMAX) b = (NQ_STEP_BMAX / 16) * 16;
    if (steps_scratch > 0) {
        nq_index_t lim = (NQ_STEP_SCRATCH_BYTES / 4) / ((nq_index_t)steps_scratch * NQ_NSAVE_ALLOC);
        lim = (lim / 16) * 16;
        if (b > lim) b = lim;
    }
    if (b < 16) b = 16;
    return (int)b;
}

static int nq_step_threads(nq_index_t elements, int nthreads) {
    if (nthreads < 1 || elements < NQ_STEP_MIN_PARALLEL) return 1;
    return nthreads;
}

// the reverse-time loop over one block (part 2), called from nq_step_backward (part 1)
__attribute__((visibility("hidden"))) void step_reverse_block(
    const float* NQ_RESTRICT cc, const NQSurrogate* sgp, const float* NQ_RESTRICT scratch, const S* NQ_RESTRICT g_spike,
    const S* const* g_seq, const S* const* g_last, S* NQ_RESTRICT g_x, S* const* g_st0, const nq_index_t n,
    const int steps, const nq_index_t i0, const int len, const int ld, const bool stream);

#if NQ_PART != 2  // ================= part 1: exact (-ffp-contract=off) ===================

// MODE 0: forward; 1: forward keeping the state sequences (seq[i] may be null); 2: the backward's
// recompute: what the step's backward needs into the scratch rec [T][NSAVE][ld], no output.
template <int MODE>
static void step_forward_block(const float* NQ_RESTRICT cc, const S* NQ_RESTRICT x, const S* const* st0,
                               S* NQ_RESTRICT spike, S* const* seq, S* const* last, float* NQ_RESTRICT scratch,
                               const nq_index_t n, const int steps, const nq_index_t i0, const int len,
                               const int ld, const bool stream) {
    float c[NQ_NCONST_ALLOC];
    for (int k = 0; k < NQStep::NCONST; ++k) c[k] = cc[k];
    alignas(64) float st[NQ_K * NQ_STEP_BMAX];
    for (int i = 0; i < NQ_K; ++i)
        for (int j = 0; j < len; ++j) st[i * NQ_STEP_BMAX + j] = nq_load(st0[i] + i0 + j);
    // short sequences: time inside tiles of NQ_STEP_TILE neurons (a tile's states stay in L1 over all steps);
    // longer ones and the backward's recompute (its scratch is laid out per step): one tile = the block
    const int tile = (MODE != 2 && steps <= NQ_STEP_T_INNER_MAX) ? NQ_STEP_TILE : len;
    for (int j0 = 0; j0 < len; j0 += tile) {
        const int j1 = len - j0 < tile ? len : j0 + tile;
        for (int t = 0; t < steps; ++t) {
            const nq_index_t off = (nq_index_t)t * n + i0;
            const S* NQ_RESTRICT xt = x + off;
            if (MODE == 2) {
                float* NQ_RESTRICT rec = scratch + (nq_index_t)t * NQ_NSAVE_ALLOC * ld;
#pragma omp simd
                for (int j = 0; j < len; ++j)
                    NQStep::forward_save(c, nq_load(xt + j), nq_col<NQ_STEP_BMAX>{st, j}, nq_wcol{rec, ld, j});
            } else if (!stream) {
                S* NQ_RESTRICT sp = spike + off;
#pragma omp simd
                for (int j = j0; j < j1; ++j) nq_store(sp + j, NQStep::forward(c, nq_load(xt + j), nq_col<NQ_STEP_BMAX>{st, j}));
                if (MODE == 1)
                    for (int i = 0; i < NQ_K; ++i) {
                        if (!seq[i]) continue;
                        S* NQ_RESTRICT q = seq[i] + off;
                        const float* NQ_RESTRICT si = st + i * NQ_STEP_BMAX;
#pragma omp simd
                        for (int j = j0; j < j1; ++j) nq_store(q + j, si[j]);
                    }
            } else {  // the same arithmetic, each chunk's outputs through an L1 buffer and streaming stores
                alignas(64) S ob[NQ_STREAM_CHUNK];
                for (int c0 = j0; c0 < j1; c0 += NQ_STREAM_CHUNK) {
                    const int m = j1 - c0 < NQ_STREAM_CHUNK ? j1 - c0 : NQ_STREAM_CHUNK;
                    const S* NQ_RESTRICT xc = xt + c0;
#pragma omp simd
                    for (int j = 0; j < m; ++j) nq_store(ob + j, NQStep::forward(c, nq_load(xc + j), nq_col<NQ_STEP_BMAX>{st, c0 + j}));
                    nq_stream_bytes(spike + off + c0, ob, (size_t)m * sizeof(S));
                    if (MODE == 1)
                        for (int i = 0; i < NQ_K; ++i) {
                            if (!seq[i]) continue;
                            const float* NQ_RESTRICT si = st + i * NQ_STEP_BMAX + c0;
#pragma omp simd
                            for (int j = 0; j < m; ++j) nq_store(ob + j, si[j]);
                            nq_stream_bytes(seq[i] + off + c0, ob, (size_t)m * sizeof(S));
                        }
                }
            }
        }
    }
    if (MODE != 2)
        for (int i = 0; i < NQ_K; ++i)
            for (int j = 0; j < len; ++j) nq_store(last[i] + i0 + j, st[i * NQ_STEP_BMAX + j]);
}

#endif  // part 1 (the forward loops)

#if NQ_PART != 1  // ================= part 2: the reverse loop (-ffp-contract=fast) ==========

// Reverse time over one block from the scratch of step_forward_block<2>; g_seq[i] (when g_seq) may be
// null.
void step_reverse_block(const float* NQ_RESTRICT cc, const NQSurrogate* sgp, const float* NQ_RESTRICT scratch,
                        const S* NQ_RESTRICT g_spike, const S* const* g_seq, const S* const* g_last,
                        S* NQ_RESTRICT g_x, S* const* g_st0, const nq_index_t n, const int steps,
                        const nq_index_t i0, const int len, const int ld, const bool stream) {
    float c[NQ_NCONST_ALLOC];
    for (int k = 0; k < NQStep::NCONST; ++k) c[k] = cc[k];
    NQSurrogate sg[NQ_NSG_ALLOC];
    for (int k = 0; k < NQStep::NSG; ++k) sg[k] = sgp[k];
    alignas(64) float g[NQ_K * NQ_STEP_BMAX];
    for (int i = 0; i < NQ_K; ++i) {
        if (g_last && g_last[i])
            for (int j = 0; j < len; ++j) g[i * NQ_STEP_BMAX + j] = nq_load(g_last[i] + i0 + j);
        else
            for (int j = 0; j < len; ++j) g[i * NQ_STEP_BMAX + j] = 0.0f;
    }
    for (int t = steps - 1; t >= 0; --t) {
        const nq_index_t off = (nq_index_t)t * n + i0;
        const float* NQ_RESTRICT rec = scratch + (nq_index_t)t * NQ_NSAVE_ALLOC * ld;
        const S* NQ_RESTRICT gst = g_spike + off;
        S* NQ_RESTRICT gxt = g_x + off;
        if (g_seq)
            for (int i = 0; i < NQ_K; ++i) {  // dL/d(state i after step t) gets its sequence's gradient
                if (!g_seq[i]) continue;
                const S* NQ_RESTRICT q = g_seq[i] + off;
                float* NQ_RESTRICT gi = g + i * NQ_STEP_BMAX;
#pragma omp simd
                for (int j = 0; j < len; ++j) gi[j] = gi[j] + nq_load(q + j);
            }
        if (!stream) {
#pragma omp simd
            for (int j = 0; j < len; ++j)
                nq_store(gxt + j, NQStep::backward(c, sg, nq_ccol{rec, ld, j}, nq_load(gst + j),
                                                   nq_col<NQ_STEP_BMAX>{g, j}));
        } else {
            alignas(64) S ob[NQ_STREAM_CHUNK];
            for (int j0 = 0; j0 < len; j0 += NQ_STREAM_CHUNK) {
                const int m = len - j0 < NQ_STREAM_CHUNK ? len - j0 : NQ_STREAM_CHUNK;
#pragma omp simd
                for (int j = 0; j < m; ++j)
                    nq_store(ob + j, NQStep::backward(c, sg, nq_ccol{rec, ld, j0 + j}, nq_load(gst + j0 + j),
                                                      nq_col<NQ_STEP_BMAX>{g, j0 + j}));
                nq_stream_bytes(gxt + j0, ob, (size_t)m * sizeof(S));
            }
        }
    }
    for (int i = 0; i < NQ_K; ++i)
        if (g_st0[i])
            for (int j = 0; j < len; ++j) nq_store(g_st0[i] + i0 + j, g[i * NQ_STEP_BMAX + j]);
}

#endif  // part 2

#if NQ_PART != 2  // ================= part 1: the entry points ===================

extern "C" {

// What the library was built for, checked by neuroq/ops/generated.py: NSTATE, NCONST, NSG, the
// storage size, sizeof(NQSurrogate).
void nq_step_abi(int* out) {
    out[0] = NQ_K;
    out[1] = NQStep::NCONST;
    out[2] = NQStep::NSG;
    out[3] = (int)sizeof(S);
    out[4] = (int)sizeof(NQSurrogate);
}

// The smallest output (bytes) written with streaming stores (stream_cpu.h).
long long nq_step_stream_min_bytes(void) { return (long long)NQ_STREAM_MIN_BYTES; }

// The longest sequence whose forward runs time inside tiles (step_forward_block).
int nq_step_t_inner_max(void) { return NQ_STEP_T_INNER_MAX; }

// x, spike [T, N]; st0[i], last[i] [N]; seq[i] [T, N] or null (seq itself null: none kept).
void nq_step_forward(const float* c, const S* x, const S* const* st0, S* spike, S* const* seq, S* const* last,
                     long long n, int steps, int nthreads) {
    bool any_seq = false;
    for (int i = 0; i < NQ_K; ++i) any_seq = any_seq || (seq && seq[i]);
    const int nt = nq_step_threads(n * (nq_index_t)(steps > 0 ? steps : 1), nthreads);
    const int B = nq_step_block(n, nt, 0);
    const nq_index_t nblocks = (n + B - 1) / B;
    const bool stream = nq_stream_wanted(n * (nq_index_t)(steps > 0 ? steps : 0), sizeof(S));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (nq_index_t b = 0; b < nblocks; ++b) {
            const nq_index_t i0 = b * B;
            const int len = (int)(n - i0 < B ? n - i0 : B);
            if (any_seq) step_forward_block<1>(c, x, st0, spike, seq, last, 0, n, steps, i0, len, 0, stream);
            else step_forward_block<0>(c, x, st0, spike, seq, last, 0, n, steps, i0, len, 0, stream);
        }
        if (stream) nq_stream_fence();
    }
}

// Backward of nq_step_forward from its inputs (x, st0): g_spike must not be null (pass zeros);
// g_seq / g_last (arrays of NSTATE pointers, or null) and their entries may be null (zero); g_st0[i]
// null: that initial state's gradient is not wanted.
void nq_step_backward(const float* c, const NQSurrogate* sg, const S* x, const S* const* st0, const S* g_spike,
                      const S* const* g_seq, const S* const* g_last, S* g_x, S* const* g_st0, long long n,
                      int steps, int nthreads) {
    if (steps <= 0) {
        for (int i = 0; i < NQ_K; ++i)
            if (g_st0[i])
                for (nq_index_t j = 0; j < n; ++j)
                    nq_store(g_st0[i] + j, (g_last && g_last[i]) ? nq_load(g_last[i] + j) : 0.0f);
        return;
    }
    bool any_gseq = false;
    for (int i = 0; i < NQ_K; ++i) any_gseq = any_gseq || (g_seq && g_seq[i]);
    const int nt = nq_step_threads(n * (nq_index_t)steps, nthreads);
    const int B = nq_step_block(n, nt, steps);
    const nq_index_t nblocks = (n + B - 1) / B;
    const bool stream = nq_stream_wanted(n * (nq_index_t)steps, sizeof(S));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float* rec = (float*)aligned_alloc(64, (((size_t)steps * NQ_NSAVE_ALLOC * B * sizeof(float) + 63) / 64) * 64);
#pragma omp for schedule(static)
        for (nq_index_t b = 0; b < nblocks; ++b) {
            const nq_index_t i0 = b * B;
            const int len = (int)(n - i0 < B ? n - i0 : B);
            step_forward_block<2>(c, x, st0, 0, 0, 0, rec, n, steps, i0, len, B, false);
            step_reverse_block(c, sg, rec, g_spike, any_gseq ? g_seq : 0, g_last, g_x, g_st0, n, steps, i0, len, B,
                               stream);
        }
        if (stream) nq_stream_fence();
        free(rec);
    }
}

}  // extern "C"

#endif  // part 1 (the entry points)
