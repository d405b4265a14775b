// Int8 matrix products through Q8_0 frozen weights on x86 CPUs with AVX-512 VNNI.
//
// ggml's own Q8_0 kernel dots one weight row with one activation column at a time, with a scale
// conversion per 32-value block, and runs no faster than OpenBLAS's fp32 sgemm on Zen 4. Here the
// weights are repacked once, 16 rows interleaved four bytes at a time, so that one VPDPBUSD
// multiplies 16 rows by 4 values of one column with no horizontal sums, and a register tile of
// 32 rows × 6 columns reuses each load many times. Activations are quantized per 32 values the way
// ggml quantizes them for Q8_0 (scale = max |x| / 127 kept as f16, round to nearest even), so the
// results equal ggml's Q8_0 mul_mat up to the order of the float sums.
//
// Layouts (bytes):
//   pack   [576, nb, groups]: for each group of 16 output rows and each block of 32 reduction
//          values, 8 × 64 bytes (lane r holds 4 consecutive values of row r, stored + 128 as
//          unsigned), then the 16 rows' scales as f32. groups is even (pairs are the tile).
//   xq     [40·nb, m]: for each column and block, 32 int8 values, the f32 scale, and −128·Σq
//          (the correction for the weights' +128 offset, added where the accumulation starts).
// Pure functions; the ggml ops and the packing from ggml tensors are in hone.cc.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace hone::q8 {

constexpr int kBlock = 32;        // reduction values per scale (Q8_0's block)
constexpr int kRows = 16;         // output rows per group (one 512-bit register of int32)
constexpr int kGroupBytes = 576;  // 8 × 64 bytes of values + 16 f32 scales
constexpr int kXBytes = 40;       // 32 int8 + f32 scale + int32 correction

inline int64_t groupsFor(int64_t rows) { int64_t g = (rows + kRows - 1) / kRows; return g + (g & 1); }

/** stores row r's 32 quantized values q (−127..127) and scale d at their places in a group block */
inline void putRow(uint8_t *block, int r, const int8_t *q, float d) {
    for (int i = 0; i < kBlock; i++) block[(i / 4) * 64 + r * 4 + (i % 4)] = (uint8_t)(q[i] + 128);
    memcpy(block + 512 + 4 * r, &d, 4);
}

/** quantizes 32 values symmetrically (scale = max |v| / 127, round to nearest) */
inline float quantizeBlock(const float *v, int8_t *q) {
    float amax = 0;
    for (int i = 0; i < kBlock; i++) amax = std::max(amax, std::fabs(v[i]));
    const float d = amax / 127, id = d ? 1 / d : 0;
    for (int i = 0; i < kBlock; i++) q[i] = (int8_t)std::nearbyint(v[i] * id);
    return d;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HONE_Q8_KERNELS 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")
#pragma GCC optimize("O3")
}  // namespace hone::q8
#include <immintrin.h>
namespace hone::q8 {

// one block of 32 values (v0, v1) at scale d (1/d = id) into out; returns the rounded values
inline void putBlock(__m512i q0, __m512i q1, float d, uint8_t *out) {
    _mm_storeu_si128((__m128i *)out, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(out + 16), _mm512_cvtsepi32_epi8(q1));
    const int32_t c = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    memcpy(out + 32, &d, 4);
    memcpy(out + 36, &c, 4);
}

inline float absMax(__m512 v0, __m512 v1) {
    const __m512 absMask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, absMask), _mm512_and_ps(v1, absMask)));
}

/**
 * quantizes columns [m0, m1) of x (k values per column, column stride ldx floats) into xq. With
 * `residualAt` (the column count m), column j's rounding error is quantized again into column
 * m + j: the two int8 terms together carry about 14 bits (input gradients).
 */
inline void quantize(const float *x, int64_t ldx, int64_t k, int64_t m0, int64_t m1, uint8_t *xq, int64_t residualAt) {
    const int64_t nb = k / kBlock;
    for (int64_t m = m0; m < m1; m++) {
        const float *col = x + m * ldx;
        uint8_t *out = xq + m * nb * kXBytes, *res = xq + (m + residualAt) * nb * kXBytes;
        for (int64_t b = 0; b < nb; b++, out += kXBytes, res += kXBytes) {
            const __m512 v0 = _mm512_loadu_ps(col + b * kBlock), v1 = _mm512_loadu_ps(col + b * kBlock + 16);
            // as ggml quantizes activations for Q8_0: 1/scale from the f32 scale, the scale kept as f16,
            // round to nearest even
            const float d = absMax(v0, v1) / 127, id = d ? 1 / d : 0, d16 = _cvtsh_ss(_cvtss_sh(d, 0));
            const __m512 s = _mm512_set1_ps(id);
            const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, s)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, s));
            putBlock(q0, q1, d16, out);
            if (!residualAt) continue;
            const __m512 ds = _mm512_set1_ps(d16);
            const __m512 r0 = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(q0), ds, v0), r1 = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(q1), ds, v1);
            const float e = absMax(r0, r1) / 127, ie = e ? 1 / e : 0;
            const __m512 t = _mm512_set1_ps(ie);
            putBlock(_mm512_cvtps_epi32(_mm512_mul_ps(r0, t)), _mm512_cvtps_epi32(_mm512_mul_ps(r1, t)), e, res);
        }
    }
}

// y[m][n] for the 32 rows of group pair gp and C columns from m0, over blocks [b0, b1);
// adds to y when `accumulate` (a later slice of the reduction)
template <int C>
inline void tile(const uint8_t *pack, int64_t nb, int64_t gp, const uint8_t *xq, int64_t m0, int64_t b0, int64_t b1, float *y, int64_t n, bool accumulate) {
    const int64_t r0 = gp * 2 * kRows;
    const int valid0 = (int)std::clamp<int64_t>(n - r0, 0, kRows), valid1 = (int)std::clamp<int64_t>(n - r0 - kRows, 0, kRows);
    const __mmask16 mask0 = valid0 == kRows ? 0xffff : (__mmask16)((1u << valid0) - 1);
    const __mmask16 mask1 = valid1 == kRows ? 0xffff : (__mmask16)((1u << valid1) - 1);
    __m512 acc0[C], acc1[C];
#pragma GCC unroll 8
    for (int j = 0; j < C; j++) {
        float *yj = y + (m0 + j) * n + r0;
        acc0[j] = accumulate ? _mm512_maskz_loadu_ps(mask0, yj) : _mm512_setzero_ps();
        acc1[j] = accumulate && valid1 ? _mm512_maskz_loadu_ps(mask1, yj + kRows) : _mm512_setzero_ps();
    }
    const uint8_t *w0 = pack + (gp * 2) * nb * kGroupBytes, *w1 = w0 + nb * kGroupBytes;
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *a0 = w0 + b * kGroupBytes, *a1 = w1 + b * kGroupBytes;
        const uint8_t *xb[C];
        __m512i i0[C], i1[C];
#pragma GCC unroll 8
        for (int j = 0; j < C; j++) {
            xb[j] = xq + ((m0 + j) * nb + b) * kXBytes;
            i0[j] = i1[j] = _mm512_set1_epi32(*(const int32_t *)(xb[j] + 36));
        }
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m512i wa0 = _mm512_loadu_si512(a0 + s * 64), wa1 = _mm512_loadu_si512(a1 + s * 64);
#pragma GCC unroll 8
            for (int j = 0; j < C; j++) {
                const __m512i xv = _mm512_set1_epi32(*(const int32_t *)(xb[j] + 4 * s));
                i0[j] = _mm512_dpbusd_epi32(i0[j], wa0, xv);
                i1[j] = _mm512_dpbusd_epi32(i1[j], wa1, xv);
            }
        }
        const __m512 d0 = _mm512_loadu_ps(a0 + 512), d1 = _mm512_loadu_ps(a1 + 512);
#pragma GCC unroll 8
        for (int j = 0; j < C; j++) {
            const __m512 dx = _mm512_set1_ps(*(const float *)(xb[j] + 32));
            acc0[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0[j]), _mm512_mul_ps(d0, dx), acc0[j]);
            acc1[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1[j]), _mm512_mul_ps(d1, dx), acc1[j]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < C; j++) {
        float *yj = y + (m0 + j) * n + r0;
        if (valid0) _mm512_mask_storeu_ps(yj, mask0, acc0[j]);
        if (valid1) _mm512_mask_storeu_ps(yj + kRows, mask1, acc1[j]);
    }
}

/**
 * y [m][n] (row stride n) = pack (n rows, nb blocks) · xq (m columns). Thread ith of nth takes a
 * share of the group pairs; the reduction is cut into slices whose weights stay in L2.
 */
inline void gemm(const uint8_t *pack, int64_t nb, int64_t groups, const uint8_t *xq, int64_t m, float *y, int64_t n, int ith, int nth) {
    const int64_t pairs = groups / 2, per = (pairs + nth - 1) / nth;
    const int64_t lo = std::min(pairs, ith * per), hi = std::min(pairs, lo + per);
    const int64_t slice = std::min<int64_t>(nb, 64);                                            // blocks per reduction slice
    const int64_t chunk = std::max<int64_t>(1, (192 << 10) / (2 * slice * kGroupBytes));  // pairs per L2 chunk
    for (int64_t c0 = lo; c0 < hi; c0 += chunk) {
        const int64_t c1 = std::min(hi, c0 + chunk);
        for (int64_t b0 = 0; b0 < nb; b0 += slice) {
            const int64_t b1 = std::min(nb, b0 + slice);
            int64_t j = 0;
            for (; j + 6 <= m; j += 6)
                for (int64_t g = c0; g < c1; g++) tile<6>(pack, nb, g, xq, j, b0, b1, y, n, b0 > 0);
            for (int64_t g = c0; g < c1; g++) {
                switch (m - j) {
                    case 5: tile<5>(pack, nb, g, xq, j, b0, b1, y, n, b0 > 0); break;
                    case 4: tile<4>(pack, nb, g, xq, j, b0, b1, y, n, b0 > 0); break;
                    case 3: tile<3>(pack, nb, g, xq, j, b0, b1, y, n, b0 > 0); break;
                    case 2: tile<2>(pack, nb, g, xq, j, b0, b1, y, n, b0 > 0); break;
                    case 1: tile<1>(pack, nb, g, xq, j, b0, b1, y, n, b0 > 0); break;
                    default: break;
                }
            }
        }
    }
}

#pragma GCC pop_options

/** whether this CPU runs the kernels (AVX-512 F/BW/VL/DQ with VNNI) */
inline bool supported() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
}
#else
inline bool supported() { return false; }
inline void quantize(const float *, int64_t, int64_t, int64_t, int64_t, uint8_t *, int64_t) {}
inline void gemm(const uint8_t *, int64_t, int64_t, const uint8_t *, int64_t, float *, int64_t, int, int) {}
#endif

}  // namespace hone::q8
