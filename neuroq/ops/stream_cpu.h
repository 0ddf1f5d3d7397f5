// neuroq/ops/stream_cpu.h -- streaming (non-temporal) stores for the CPU kernels' large outputs.
//
// A [T, N] output larger than the last-level cache is written once and read by the next layer from
// DRAM anyway.  An ordinary store first reads each cache line it writes (read-for-ownership), so a
// forward that reads X and writes S moves three tensors' worth of bytes, not two.  A streaming store
// (x86 MOVNT*) writes whole lines without reading them.  Below the threshold the output stays in
// cache for its reader and ordinary stores are faster; benchmarks/generated_kernels.py measures both.
//
// The SIMD loops compute a chunk of NQ_STREAM_CHUNK elements into a small L1 buffer (the compiler
// vectorises them as before), then nq_stream_bytes copies the chunk out with streaming stores: the
// destination's unaligned head and tail as ordinary stores, the aligned middle as whole vectors.
// Streaming stores are weakly ordered: every thread calls nq_stream_fence() before the kernel returns.
// Not compiled for CUDA (the GPU kernels' stores already bypass the read).
#ifndef NEUROQ_OPS_STREAM_CPU_H
#define NEUROQ_OPS_STREAM_CPU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#ifndef NQ_STREAM_MIN_BYTES
#define NQ_STREAM_MIN_BYTES (8LL << 20)  // outputs of at least 8 MiB are streamed
#endif
#define NQ_STREAM_CHUNK 256              // elements per L1 buffer

static inline bool nq_stream_wanted(long long elements, size_t element_bytes) {
    return elements * (long long)element_bytes >= (long long)NQ_STREAM_MIN_BYTES;
}

static inline void nq_stream_bytes(void* dst, const void* src, size_t bytes) {
#if defined(__SSE2__)
    char* d = (char*)dst;
    const char* s = (const char*)src;
    size_t head = (size_t)(-(uintptr_t)d) & 63;
    if (head > bytes) head = bytes;
    memcpy(d, s, head);
    d += head, s += head, bytes -= head;
#if defined(__AVX512F__)
    for (; bytes >= 64; bytes -= 64, d += 64, s += 64)
        _mm512_stream_si512((__m512i*)d, _mm512_loadu_si512((const void*)s));
#elif defined(__AVX__)
    for (; bytes >= 32; bytes -= 32, d += 32, s += 32)
        _mm256_stream_si256((__m256i*)d, _mm256_loadu_si256((const __m256i*)s));
#else
    for (; bytes >= 16; bytes -= 16, d += 16, s += 16)
        _mm_stream_si128((__m128i*)d, _mm_loadu_si128((const __m128i*)s));
#endif
    memcpy(d, s, bytes);
#else
    memcpy(dst, src, bytes);
#endif
}

static inline void nq_stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

#endif  // NEUROQ_OPS_STREAM_CPU_H
