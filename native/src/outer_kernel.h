// Attention's sums over keys or queries on x86 CPUs with AVX-512, for each head g:
//   dst[i, n, g] = Σ_c a[i, c, g / (G / Ga)] · P(n, c, g)      (ggml order: dim 0 first)
// with a [I, C, Ga] (I contiguous: hd) and P one of
//   over queries (dV, dK): n a key, c a query, P(n, c) = p[n, c] with p [T_k, T_q] (probabilities, dS)
//   over keys (O, dQ):     n a query, c a key, P(n, c) = p[c, n] with p [T_k, T_q], a [hd, T_k] (V, K)
// Both are read as they lie, so no transposed copy is made (ggml copies transposes element by
// element). The mask is causal: p[key, query] = 0 for key > query, so a tile sums only over the
// keys ≤ its queries or the queries ≥ its keys: half the work. In 6 × 64 register tiles: ggml's
// out_prod ran dV/dK at ~50 GFLOP/s with axpy loops; OpenBLAS takes single matrices only through
// ggml-blas, and called per head from a ggml custom op it fights ggml's spinning barrier.
// Pure functions; the ggml op is in hone.cc.
#pragma once
#include <algorithm>
#include <cstdint>

namespace hone::outer {

enum class Over { Queries = 0, Keys = 1 };

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC optimize("O3")
}  // namespace hone::outer
#include <immintrin.h>
namespace hone::outer {

constexpr int kRows = 6;  // result rows (n) per register tile

// 16·V columns of dst rows n0..n0+J-1 (row stride ldd) of one head, summed over c in [c0, c1);
// P(n, c) = p[n·sn + c·sc]
template <int J, int V>
inline void tile(const float *a, int64_t lda, const float *p, int64_t sn, int64_t sc, int64_t n0, int64_t c0, int64_t c1, float *dst, int64_t ldd) {
    __m512 acc[J][V];
#pragma GCC unroll 8
    for (int j = 0; j < J; j++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) acc[j][v] = _mm512_setzero_ps();
    for (int64_t c = c0; c < c1; c++) {
        const float *ac = a + c * lda, *pc = p + c * sc + n0 * sn;
        __m512 av[V];
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) av[v] = _mm512_loadu_ps(ac + 16 * v);
#pragma GCC unroll 8
        for (int j = 0; j < J; j++) {
            const __m512 pj = _mm512_set1_ps(pc[j * sn]);
#pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[j][v] = _mm512_fmadd_ps(pj, av[v], acc[j][v]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < J; j++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_storeu_ps(dst + (n0 + j) * ldd + 16 * v, acc[j][v]);
}

template <int V>
inline void rows(const float *a, int64_t lda, const float *p, int64_t sn, int64_t sc, int64_t nn, int64_t nc, Over over, float *dst, int64_t ldd, int64_t t) {
    const int64_t n0 = t * kRows, J = std::min<int64_t>(kRows, nn - n0);
    // causal: over queries, key n needs queries c ≥ n; over keys, query n needs keys c ≤ n
    const int64_t c0 = over == Over::Queries ? std::min(n0, nc) : 0;
    const int64_t c1 = over == Over::Keys ? std::min(n0 + J, nc) : nc;
    switch (J) {
        case 6: tile<6, V>(a, lda, p, sn, sc, n0, c0, c1, dst, ldd); break;
        case 5: tile<5, V>(a, lda, p, sn, sc, n0, c0, c1, dst, ldd); break;
        case 4: tile<4, V>(a, lda, p, sn, sc, n0, c0, c1, dst, ldd); break;
        case 3: tile<3, V>(a, lda, p, sn, sc, n0, c0, c1, dst, ldd); break;
        case 2: tile<2, V>(a, lda, p, sn, sc, n0, c0, c1, dst, ldd); break;
        case 1: tile<1, V>(a, lda, p, sn, sc, n0, c0, c1, dst, ldd); break;
        default: break;
    }
}

/**
 * Work items: heads × ceil(nn / 6) tiles of result rows, dealt round-robin to the nth threads.
 * a: head ga at a + ga·strideA, rows (one per c) of ni floats at stride lda; p: head g at
 * p + g·strideP, row stride ldp (rows along c when over queries, along n when over keys); dst:
 * head g at dst + g·nn·ni, rows of ni. Heads g of p and dst share a's head g / (heads / headsA).
 * p must be 0 where key > query (a causal mask).
 */
inline void run(const float *a, int64_t lda, int64_t strideA, int64_t headsA, const float *p, int64_t ldp, int64_t strideP, int64_t ni, int64_t nn, int64_t nc, int64_t heads,
                Over over, float *dst, int ith, int nth) {
    const int64_t sn = over == Over::Queries ? 1 : ldp, sc = over == Over::Queries ? ldp : 1;
    const int64_t tiles = (nn + kRows - 1) / kRows, items = heads * tiles, group = heads / headsA;
    // causal tiles differ in length: round-robin keeps the threads even
    for (int64_t w = ith; w < items; w += nth) {
        const int64_t g = w % heads, t = w / heads;
        const float *ag = a + (g / group) * strideA, *pg = p + g * strideP;
        float *dg = dst + g * nn * ni;
        for (int64_t i0 = 0; i0 < ni; i0 += 64) {  // 64 columns at a time: 24 accumulators
            switch (std::min<int64_t>(4, (ni - i0) / 16)) {
                case 1: rows<1>(ag + i0, lda, pg, sn, sc, nn, nc, over, dg + i0, ni, t); break;
                case 2: rows<2>(ag + i0, lda, pg, sn, sc, nn, nc, over, dg + i0, ni, t); break;
                case 3: rows<3>(ag + i0, lda, pg, sn, sc, nn, nc, over, dg + i0, ni, t); break;
                case 4: rows<4>(ag + i0, lda, pg, sn, sc, nn, nc, over, dg + i0, ni, t); break;
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
inline void run(const float *, int64_t, int64_t, int64_t, const float *, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, Over, float *, int, int) {}
#endif

/** whether `run` takes rows of this size (a multiple of 16 floats) */
inline bool fits(int64_t ni) { return ni % 16 == 0 && ni > 0; }

}  // namespace hone::outer
