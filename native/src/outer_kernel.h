// The attention backward's dV and dK on x86 CPUs with AVX-512: for each head g,
//   dst[i, j, g] = Σ_q a[i, q, g] · p[j, q, g]      (ggml order: dim 0 first)
// with a [hd, T_q] (dO or Q) and p [T_k, T_q] (the probabilities or dS). Both are read as they lie,
// q-major, so no transposed copy is made (ggml copies transposes element by element), and under a
// causal mask p[j, q] = 0 for j > q: a tile of keys j0.. starts its sum at q = j0, half the work.
// ggml's own out_prod runs these at ~50 GFLOP/s with axpy loops; OpenBLAS takes single matrices
// only through ggml-blas, and called per head from a ggml custom op it fights ggml's spinning
// barrier. Pure functions; the ggml op is in hone.cc.
#pragma once
#include <algorithm>
#include <cstdint>

namespace hone::outer {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC optimize("O3")
}  // namespace hone::outer
#include <immintrin.h>
namespace hone::outer {

constexpr int kKeys = 6;  // keys per register tile (rows of the result block)

// 16·V columns of dst rows j0..j0+J-1 (row stride ldd) of one head
template <int J, int V>
inline void tile(const float *a, int64_t lda, const float *p, int64_t ldp, int64_t nq, int64_t j0, int64_t q0, float *dst, int64_t ldd) {
    __m512 acc[J][V];
#pragma GCC unroll 8
    for (int j = 0; j < J; j++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) acc[j][v] = _mm512_setzero_ps();
    for (int64_t q = q0; q < nq; q++) {
        const float *aq = a + q * lda, *pq = p + q * ldp + j0;
        __m512 av[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) av[v] = _mm512_loadu_ps(aq + 16 * v);
#pragma GCC unroll 8
        for (int j = 0; j < J; j++) {
            const __m512 pj = _mm512_set1_ps(pq[j]);
#pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[j][v] = _mm512_fmadd_ps(pj, av[v], acc[j][v]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < J; j++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_storeu_ps(dst + (j0 + j) * ldd + 16 * v, acc[j][v]);
}

template <int V>
inline void columns(const float *a, int64_t lda, const float *p, int64_t ldp, int64_t nk, int64_t nq, bool causal, float *dst, int64_t ldd, int64_t t) {
    const int64_t j0 = t * kKeys, q0 = causal ? std::min(j0, nq) : 0;
    switch (std::min<int64_t>(kKeys, nk - j0)) {
        case 6: tile<6, V>(a, lda, p, ldp, nq, j0, q0, dst, ldd); break;
        case 5: tile<5, V>(a, lda, p, ldp, nq, j0, q0, dst, ldd); break;
        case 4: tile<4, V>(a, lda, p, ldp, nq, j0, q0, dst, ldd); break;
        case 3: tile<3, V>(a, lda, p, ldp, nq, j0, q0, dst, ldd); break;
        case 2: tile<2, V>(a, lda, p, ldp, nq, j0, q0, dst, ldd); break;
        case 1: tile<1, V>(a, lda, p, ldp, nq, j0, q0, dst, ldd); break;
        default: break;
    }
}

/**
 * Work items: heads × ceil(nk / 6) tiles of keys, dealt round-robin to the nth threads.
 * a: head g at a + g·strideA (rows of hd floats, q-major, row stride lda); p likewise (rows of nk);
 * dst: head g at dst + g·nk·hd, rows of hd. Under `causal`, p[j, q] must be 0 for j > q.
 */
inline void run(const float *a, int64_t lda, int64_t strideA, const float *p, int64_t ldp, int64_t strideP, int64_t hd, int64_t nk, int64_t nq, int64_t heads, bool causal, float *dst, int ith, int nth) {
    const int64_t tiles = (nk + kKeys - 1) / kKeys, items = heads * tiles;
    // causal tiles differ in length (later keys sum over fewer queries): round-robin keeps threads even
    for (int64_t w = ith; w < items; w += nth) {
        const int64_t g = w % heads, t = w / heads;
        const float *ag = a + g * strideA, *pg = p + g * strideP;
        float *dg = dst + g * nk * hd;
        for (int64_t i0 = 0; i0 < hd; i0 += 64) {  // 64 columns at a time: 24 accumulators
            switch (std::min<int64_t>(4, (hd - i0) / 16)) {
                case 1: columns<1>(ag + i0, lda, pg, ldp, nk, nq, causal, dg + i0, hd, t); break;
                case 2: columns<2>(ag + i0, lda, pg, ldp, nk, nq, causal, dg + i0, hd, t); break;
                case 3: columns<3>(ag + i0, lda, pg, ldp, nk, nq, causal, dg + i0, hd, t); break;
                case 4: columns<4>(ag + i0, lda, pg, ldp, nk, nq, causal, dg + i0, hd, t); break;
                default: break;
            }
        }
    }
}

#pragma GCC pop_options

inline bool supported() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
inline bool supported() { return false; }
inline void run(const float *, int64_t, int64_t, const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, float *, int, int) {}
#endif

/** whether `run` takes heads of this size (a multiple of 16 floats) */
inline bool fits(int64_t hd) { return hd % 16 == 0 && hd > 0; }

}  // namespace hone::outer
