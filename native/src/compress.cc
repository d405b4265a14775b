// Compression kernels that are sequential by nature and so cannot be a ggml graph: the in-block
// coordinate descent of learned codes (electron/lab/compress/learn-codes.ts) and iCBS's annealed
// blocks (icbs.ts); and NUPES's exponent search, which is elementwise but pow-heavy (nupes.ts). The products around
// them (G = E·H, the lazy block updates) are ggml graphs on the engine; these kernels see one block
// of columns at a time, rows split over threads (rows are independent).
#include <napi.h>

#include "ggml.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

// hot loops built for AVX2 + FMA beside the baseline, chosen at load by the CPU (GCC/Clang on x86
// with ifunc support); elsewhere one build
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define HONE_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define HONE_CLONES
#endif

namespace {

template <typename A>
A Typed(const Napi::Object &o, const char *name, const char *op) {
    Napi::Value v = o.Get(name);
    if (!v.IsTypedArray()) throw Napi::TypeError::New(o.Env(), std::string(op) + ": '" + name + "' must be a typed array");
    return v.As<A>();
}

double Num(const Napi::Object &o, const char *name, const char *op) {
    Napi::Value v = o.Get(name);
    if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(op) + ": '" + name + "' must be a number");
    return v.As<Napi::Number>().DoubleValue();
}

// index of the entry of an ascending table nearest to t (ties to the lower), as grid.ts nearestIndex
int Nearest(const double *table, int n, double t) {
    int lo = 0, hi = n - 1;
    if (t <= table[lo]) return lo;
    if (t >= table[hi]) return hi;
    while (hi - lo > 1) {
        int mid = (lo + hi) >> 1;
        if (table[mid] <= t) lo = mid; else hi = mid;
    }
    return t - table[lo] <= table[hi] - t ? lo : hi;
}

float RoundHalf(float a) { return ggml_fp16_to_fp32(ggml_fp32_to_fp16(a)); }

// work(k, first, end) on `threads` threads, each a contiguous share of [0, n)
template <typename F>
void SplitRows(int64_t n, int threads, F work) {
    std::vector<std::thread> pool;
    const int64_t per = (n + threads - 1) / threads;
    for (int k = 0; k < threads && k * per < n; k++) pool.emplace_back(work, k, k * per, std::min(n, (k + 1) * per));
    for (auto &th : pool) th.join();
}

// learnBlock({ codes, alpha, beta, table, movable?, slab, hBlock, delta, active, changed, rows,
//   cols, b0, width, stride, groupSize, scales, roundHalf, threads }) -> the summed change of L.
// One block of columns [b0, b0 + width) of every active row: exact coordinate descent over the
// block's codes, then (with `scales`, groups inside the block) each group's scale by its Newton
// step. slab [width][rows] is G's block columns (G = (Ŵ − W)·H, current), hBlock [width][width]
// H's diagonal block; the kernel writes delta [rows][stride] (the value changes, for the caller's
// update G += delta·H[block, :]) and adds each row's accepted changes to changed[row].
// one thread's rows of learnBlock: coordinate steps on each active row's codes in the block, then
// the block's group scales; returns the loss change. Built twice on x86 with GCC or Clang (AVX2 with
// FMA, and the baseline), the loader picking the one the CPU runs: the double-precision updates of
// g are most of the time
struct LearnBlockArgs {
    const float *S, *H, *B;
    uint16_t *C;
    float *A, *D;
    const double *tab;
    const uint8_t *act, *movable;
    int32_t *chg;
    int64_t rows, cols, b0, width, stride, gs;
    int nt;
    bool scales, round;
};

HONE_CLONES double LearnRows(const LearnBlockArgs &p, int64_t r0, int64_t r1) {
    const float *S = p.S, *H = p.H, *B = p.B;
    uint16_t *C = p.C;
    float *A = p.A, *D = p.D;
    const double *tab = p.tab;
    const uint8_t *act = p.act, *movable = p.movable;
    int32_t *chg = p.chg;
    const int64_t rows = p.rows, cols = p.cols, b0 = p.b0, width = p.width, stride = p.stride, gs = p.gs;
    const int nt = p.nt;
    const bool scales = p.scales, round = p.round;
    std::vector<double> g(width), t(width);
    double sum = 0;
    for (int64_t r = r0; r < r1; r++) {
        float *d = D + r * stride;
        std::fill(d, d + stride, 0.f);
        if (!act[r]) continue;
        const int64_t o = r * cols + b0;
        for (int64_t j = 0; j < width; j++) g[j] = S[j * rows + r];
        // value i changes by dv: G's block entries follow (row i of H's block)
        auto move = [&](int64_t i, double dv) {
            d[i] += (float)dv;
            const float *hi = H + i * width;
            for (int64_t j = 0; j < width; j++) g[j] += dv * hi[j];
        };
        int32_t n = 0;
        for (int64_t i = 0; i < width; i++) {
            const double h = H[i * width + i];
            if (!(h > 0) || (movable && !movable[o + i])) continue;
            const int64_t gi = (o + i) / gs;
            const double a = A[gi], bb = B[gi];
            if (a == 0) continue;
            const double cur = a * tab[C[o + i]] + bb;
            const int q = Nearest(tab, nt, (cur - g[i] / h - bb) / a);
            const double dv = a * tab[q] + bb - cur;
            const double dL = 2 * dv * g[i] + dv * dv * h;
            if (dv == 0 || !(dL < 0)) continue;
            C[o + i] = (uint16_t)q;
            move(i, dv);
            sum += dL;
            n++;
        }
        if (scales && gs < cols) {
            // each group's α: L(α + δ) = L + 2δ·Σ G_i t_i + δ²·tᵀ H_gg t, t_i = table[code_i]
            for (int64_t g0 = 0; g0 < width; g0 += gs) {
                const int64_t gi = (o + g0) / gs;
                double a = 0, c = 0;
                for (int64_t i = 0; i < gs; i++) { t[i] = tab[C[o + g0 + i]]; a += g[g0 + i] * t[i]; }
                for (int64_t i = 0; i < gs; i++) {
                    if (t[i] == 0) continue;
                    double hi = 0;
                    const float *row = H + (g0 + i) * width + g0;
                    for (int64_t j = 0; j < gs; j++) hi += row[j] * t[j];
                    c += t[i] * hi;
                }
                if (!(c > 0)) continue;
                const float next = round ? RoundHalf((float)(A[gi] - a / c)) : (float)(A[gi] - a / c);
                const double dv = (double)next - A[gi];
                const double dL = 2 * dv * a + dv * dv * c;
                if (dv == 0 || !(dL < 0) || !std::isfinite(next)) continue;
                A[gi] = next;
                for (int64_t i = 0; i < gs; i++) if (t[i] != 0) move(g0 + i, dv * t[i]);
                sum += dL;
                n++;
            }
        }
        chg[r] += n;
    }
    return sum;
}

Napi::Value LearnBlock(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *op = "learnBlock";
    Napi::Object o = info[0].As<Napi::Object>();
    auto codes = Typed<Napi::Uint16Array>(o, "codes", op);
    auto alpha = Typed<Napi::Float32Array>(o, "alpha", op);
    auto beta = Typed<Napi::Float32Array>(o, "beta", op);
    auto table = Typed<Napi::Float64Array>(o, "table", op);
    auto slab = Typed<Napi::Float32Array>(o, "slab", op);
    auto hBlock = Typed<Napi::Float32Array>(o, "hBlock", op);
    auto delta = Typed<Napi::Float32Array>(o, "delta", op);
    auto active = Typed<Napi::Uint8Array>(o, "active", op);
    auto changed = Typed<Napi::Int32Array>(o, "changed", op);
    Napi::Value mv = o.Get("movable");
    const uint8_t *movable = mv.IsTypedArray() ? mv.As<Napi::Uint8Array>().Data() : nullptr;
    const int64_t rows = (int64_t)Num(o, "rows", op), cols = (int64_t)Num(o, "cols", op);
    const int64_t b0 = (int64_t)Num(o, "b0", op), width = (int64_t)Num(o, "width", op), stride = (int64_t)Num(o, "stride", op);
    const int64_t gs = (int64_t)Num(o, "groupSize", op);
    const bool scales = o.Get("scales").ToBoolean(), round = o.Get("roundHalf").ToBoolean();
    const int threads = std::max(1, (int)Num(o, "threads", op));
    const int nt = (int)table.ElementLength();
    const bool ok = (int64_t)codes.ElementLength() == rows * cols && gs > 0 && cols % gs == 0 &&
        (int64_t)alpha.ElementLength() == rows * cols / gs && alpha.ElementLength() == beta.ElementLength() && b0 >= 0 && width > 0 &&
        b0 + width <= cols && stride >= width && (int64_t)slab.ElementLength() >= width * rows && (int64_t)hBlock.ElementLength() >= width * width &&
        (int64_t)delta.ElementLength() >= rows * stride && (int64_t)active.ElementLength() == rows && (int64_t)changed.ElementLength() == rows &&
        (!movable || (int64_t)mv.As<Napi::Uint8Array>().ElementLength() == rows * cols) && nt > 0 &&
        (!scales || gs >= cols || (b0 % gs == 0 && width % gs == 0));
    if (!ok) throw Napi::RangeError::New(env, "learnBlock: the arrays and sizes do not fit together");

    const float *S = slab.Data(), *H = hBlock.Data();
    uint16_t *C = codes.Data();
    float *A = alpha.Data(), *D = delta.Data();
    const float *B = beta.Data();
    const double *tab = table.Data();
    const uint8_t *act = active.Data();
    int32_t *chg = changed.Data();
    std::vector<double> sums(threads, 0.0);

    const LearnBlockArgs args{S, H, B, C, A, D, tab, act, movable, chg, rows, cols, b0, width, stride, gs, nt, scales, round};
    auto work = [&](int k, int64_t r0, int64_t r1) { sums[k] = LearnRows(args, r0, r1); };
    SplitRows(rows, threads, work);
    double total = 0;
    for (double s : sums) total += s;
    return Napi::Number::New(env, total);
}


// ---------------------------------------------------------------------------------------------
// iCBS (electron/lab/compress/icbs.ts): blocks of weights re-decided by simulated annealing against
// the layer's output error. H couples only weights of the same row, so blocks in different rows are
// independent: each thread improves the mask of its own range of rows.

struct Rng {  // mulberry32, as data/pack.ts Rng
    uint32_t s;
    explicit Rng(uint32_t seed) : s(seed) {}
    double next() {
        s += 0x6d2b79f5u;
        uint32_t t = s;
        t = (t ^ (t >> 15)) * (t | 1u);
        t ^= t + (t ^ (t >> 7)) * (t | 61u);
        return (double)(t ^ (t >> 14)) / 4294967296.0;
    }
};

// min xᵀQx over x ∈ {0,1}^n with Σx fixed, by annealing with swap moves from x0 (as icbs.ts
// annealCardinality); with gs, swaps stay inside consecutive groups of gs
HONE_CLONES double Anneal(const std::vector<double> &Q, int n, std::vector<uint8_t> &x, Rng &rng, int restarts, int gs) {
    auto energyOf = [&](const std::vector<uint8_t> &v) {
        double e = 0;
        for (int i = 0; i < n; i++) if (v[i]) for (int j = 0; j < n; j++) if (v[j]) e += Q[i * n + j];
        return e;
    };
    double scale = 0;
    int nz = 0;
    for (int i = 0; i < n * n; i++) if (Q[i] != 0) { scale += std::fabs(Q[i]); nz++; }
    const double inv = nz ? nz / scale : 1;
    std::vector<uint8_t> best = x, cur(n), curBest(n);
    double bestE = energyOf(x);
    std::vector<int> on, off, posOff(n);
    std::vector<double> f(n);
    for (int rs = 0; rs < restarts; rs++) {
        cur = x;
        for (int i = 0; i < n; i++) { double s = 0; for (int j = 0; j < n; j++) if (cur[j]) s += Q[i * n + j]; f[i] = s; }
        double e = energyOf(cur), curBestE = e;
        curBest = cur;
        on.clear(); off.clear();
        for (int i = 0; i < n; i++) { if (cur[i]) on.push_back(i); else { posOff[i] = (int)off.size(); off.push_back(i); } }
        if (on.empty() || off.empty()) break;
        for (double beta = 1e-3; beta <= 100; beta *= 1.1) {
            bool changed = false;
            for (int t = 0; t < n; t++) {
                const int a = (int)(rng.next() * on.size());
                const int i = on[a];
                int j;
                if (gs) {
                    const int g0 = i - i % gs;
                    int zeros = 0;
                    for (int k = g0; k < g0 + gs; k++) zeros += cur[k] ? 0 : 1;
                    if (!zeros) continue;
                    int pick = (int)(rng.next() * zeros);
                    j = g0;
                    for (int k = g0; k < g0 + gs; k++) if (!cur[k] && pick-- == 0) { j = k; break; }
                } else {
                    j = off[(int)(rng.next() * off.size())];
                }
                const int b = posOff[j];
                const double dE = -(2 * f[i] - Q[i * n + i]) + 2 * (f[j] - Q[i * n + j]) + Q[j * n + j];
                if (dE <= 0 || rng.next() < std::exp(-beta * dE * inv)) {
                    cur[i] = 0; cur[j] = 1; on[a] = j; off[b] = i; posOff[i] = b;
                    for (int k = 0; k < n; k++) f[k] += Q[k * n + j] - Q[k * n + i];
                    e += dE;
                    changed = true;
                    if (e < curBestE - 1e-15 * std::fabs(curBestE)) { curBestE = e; curBest = cur; }
                }
            }
            if (!changed && beta > 1) break;
        }
        const double exact = energyOf(curBest);  // re-summed: no drift from the running updates
        if (exact < bestE) { bestE = exact; best = curBest; }
    }
    x = best;
    return bestE;
}

// icbsEpoch({ w0, h, g, scores, keep, fixed, rows, cols, blockSize, groupSize, blocks, restarts,
//   tabuFraction, seed, threads, check }) -> Float64Array of [predicted, actual] per accepted move
//   (actual only with `check`: the layer error recomputed, for tests).
// `blocks` blocks over the layer, split over threads by rows; g [rows, cols] = (w − w0)·H is kept
// current with each accepted move, keep (1 kept, 0 pruned) changes in place.
Napi::Value IcbsEpoch(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *op = "icbsEpoch";
    Napi::Object o = info[0].As<Napi::Object>();
    auto w0a = Typed<Napi::Float32Array>(o, "w0", op);
    auto ha = Typed<Napi::Float32Array>(o, "h", op);
    auto ga = Typed<Napi::Float32Array>(o, "g", op);
    auto sa = Typed<Napi::Float32Array>(o, "scores", op);
    auto ka = Typed<Napi::Uint8Array>(o, "keep", op);
    auto fa = Typed<Napi::Uint8Array>(o, "fixed", op);
    const int64_t rows = (int64_t)Num(o, "rows", op), cols = (int64_t)Num(o, "cols", op);
    const int n = (int)Num(o, "blockSize", op), gs = (int)Num(o, "groupSize", op);
    const int64_t blocks = (int64_t)Num(o, "blocks", op);
    const int restarts = (int)Num(o, "restarts", op);
    const double tabuFraction = Num(o, "tabuFraction", op);
    const uint32_t seed = (uint32_t)Num(o, "seed", op);
    const int threads = std::max(1, std::min((int)Num(o, "threads", op), (int)rows));
    const bool check = o.Get("check").ToBoolean();
    const int64_t N = rows * cols;
    const bool ok = (int64_t)w0a.ElementLength() == N && (int64_t)ha.ElementLength() == cols * cols && (int64_t)ga.ElementLength() == N &&
        (int64_t)sa.ElementLength() == N && (int64_t)ka.ElementLength() == N && (int64_t)fa.ElementLength() == N && n >= 2 && gs >= 0 &&
        (!gs || cols % gs == 0);
    if (!ok) throw Napi::RangeError::New(env, "icbsEpoch: the arrays and sizes do not fit together");
    const float *w0 = w0a.Data(), *H = ha.Data(), *S = sa.Data();
    float *G = ga.Data();
    uint8_t *keep = ka.Data();
    const uint8_t *fixed = fa.Data();

    int64_t candidates = 0;
    for (int64_t k = 0; k < N; k++) candidates += fixed[k] ? 0 : 1;
    // rows per block: enough candidates for n, so that the block's weights share rows
    const int64_t rowsPerBlock = std::max<int64_t>(1, std::min<int64_t>(rows, (4 * (int64_t)n * rows + std::max<int64_t>(1, candidates) - 1) / std::max<int64_t>(1, candidates)));
    auto layerError = [&]() {
        double s = 0;
        for (int64_t k = 0; k < N; k++) if (!keep[k]) s += -(double)w0[k] * G[k];
        return s;
    };
    std::vector<std::vector<double>> moves(threads);
    auto work = [&](int t, int64_t lo, int64_t hi) {
        Rng rng(seed + 0x9e3779b9u * (uint32_t)(t + 1));
        const int64_t span = hi - lo, rpb = std::min(rowsPerBlock, span);
        const int64_t myBlocks = (blocks * span + rows - 1) / rows;
        int64_t myCandidates = 0;
        for (int64_t k = lo * cols; k < hi * cols; k++) myCandidates += fixed[k] ? 0 : 1;
        const size_t tabuCap = (size_t)(tabuFraction * (double)myCandidates);
        std::vector<int64_t> tabu;  // a FIFO as a ring
        size_t tabuHead = 0;
        std::vector<uint8_t> inTabu((size_t)(span * cols), 0);
        auto isTabu = [&](int64_t k) { return inTabu[(size_t)(k - lo * cols)] != 0; };
        std::vector<int64_t> pr, kp, block;
        std::vector<std::pair<int64_t, float>> cand;
        std::vector<double> Q((size_t)n * n);
        std::vector<uint8_t> x, x0;
        for (int64_t blk = 0; blk < myBlocks; blk++) {
            const int64_t r0 = lo + (int64_t)(rng.next() * (double)(span - rpb + 1));
            block.clear();
            if (gs) {
                // whole groups, those holding the highest-scoring pruned weights first
                cand.clear();
                for (int64_t g = r0 * cols; g < (r0 + rpb) * cols; g += gs) {
                    if (isTabu(g)) continue;
                    float top = -INFINITY;
                    for (int64_t k = g; k < g + gs; k++) if (!keep[k]) top = std::max(top, S[k]);
                    cand.emplace_back(g, top);
                }
                const size_t take = std::min(cand.size(), (size_t)std::max(1, n / gs));
                std::partial_sort(cand.begin(), cand.begin() + take, cand.end(), [](auto &a, auto &b) { return a.second > b.second; });
                for (size_t c = 0; c < take; c++) for (int k = 0; k < gs; k++) block.push_back(cand[c].first + k);
            } else {
                pr.clear(); kp.clear();
                for (int64_t k = r0 * cols; k < (r0 + rpb) * cols; k++) if (!fixed[k] && !isTabu(k)) (keep[k] ? kp : pr).push_back(k);
                const size_t kq = std::min<size_t>(n / 2, pr.size()), kk = std::min<size_t>(n - kq, kp.size());
                if (!kq || !kk) continue;
                std::partial_sort(pr.begin(), pr.begin() + kq, pr.end(), [&](int64_t a, int64_t b) { return S[a] > S[b]; });
                std::partial_sort(kp.begin(), kp.begin() + kk, kp.end(), [&](int64_t a, int64_t b) { return S[a] < S[b]; });
                block.insert(block.end(), pr.begin(), pr.begin() + kq);
                block.insert(block.end(), kp.begin(), kp.begin() + kk);
            }
            const int m = (int)block.size();
            if (m < 2) continue;
            // Q = ½ D H' D + diag(−D g − D H' a), H' = 2H on same-row pairs, g = 2G, a = w0·[pruned]
            std::fill(Q.begin(), Q.begin() + (size_t)m * m, 0.0);
            for (int p = 0; p < m; p++) {
                const int64_t kp_ = block[p], rp = kp_ / cols, ip = kp_ % cols;
                double lin = -(double)w0[kp_] * 2 * G[kp_];
                for (int q = 0; q < m; q++) {
                    const int64_t kq_ = block[q];
                    if (kq_ / cols != rp) continue;
                    const double h = H[ip * cols + kq_ % cols];
                    Q[(size_t)p * m + q] = (double)w0[kp_] * w0[kq_] * h;
                    if (!keep[kq_]) lin -= (double)w0[kp_] * 2 * h * w0[kq_];
                }
                Q[(size_t)p * m + p] += lin;
            }
            x0.assign(m, 0);
            for (int p = 0; p < m; p++) x0[p] = keep[block[p]] ? 0 : 1;
            double e0 = 0;
            for (int p = 0; p < m; p++) if (x0[p]) for (int q = 0; q < m; q++) if (x0[q]) e0 += Q[(size_t)p * m + q];
            x = x0;
            std::vector<double> Qm(Q.begin(), Q.begin() + (size_t)m * m);
            const double energy = Anneal(Qm, m, x, rng, restarts, gs);
            for (int64_t k : block) {
                if (tabuCap == 0) break;
                if (tabu.size() < tabuCap) tabu.push_back(k);
                else { inTabu[(size_t)(tabu[tabuHead] - lo * cols)] = 0; tabu[tabuHead] = k; tabuHead = (tabuHead + 1) % tabuCap; }
                inTabu[(size_t)(k - lo * cols)] = 1;
            }
            if (!(energy < e0 - 1e-12 * std::fabs(e0))) continue;
            const double before = check ? layerError() : 0;
            for (int p = 0; p < m; p++) {
                if (x[p] == x0[p]) continue;
                const int64_t k = block[p], r = k / cols, i = k % cols;
                keep[k] = x[p] ? 0 : 1;
                const double dv = x[p] ? -(double)w0[k] : (double)w0[k];  // w − w0 changes by −w0 (pruned) or +w0 (restored)
                float *gr = G + r * cols;
                const float *hi_ = H + i * cols;
                for (int64_t j = 0; j < cols; j++) gr[j] += (float)(dv * hi_[j]);
            }
            moves[t].push_back(energy - e0);
            moves[t].push_back(check ? layerError() - before : NAN);
        }
    };
    if (check) work(0, 0, rows);  // one thread: the layer error is read between moves
    else SplitRows(rows, threads, work);
    size_t total = 0;
    for (auto &m : moves) total += m.size();
    Napi::Float64Array out = Napi::Float64Array::New(env, total);
    size_t at = 0;
    for (auto &m : moves) for (double v : m) out[at++] = v;
    return out;
}

// ---------------------------------------------------------------------------------------------
// NUPES (electron/lab/compress/nupes.ts): the error of the power grid of exponent a over a layer,
// for the exponent search. powerGridError({ w, rows, cols, bits, exponent, weights?, rowStep,
// threads }) -> Σ_rj d_j·(ŵ_rj − w_rj)² over rows 0, rowStep, 2·rowStep, … (d = 1 without
// `weights`), ŵ as nupes.ts powerGrid makes it: s_r = max_j |w_rj|^a / qmax, q = round(t_a(w)/s_r)
// clamped to ±qmax (rounding half up, as Math.round), ŵ = s_r^{1/a}·t_{1/a}(q).
Napi::Value PowerGridError(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    const char *op = "powerGridError";
    Napi::Object o = info[0].As<Napi::Object>();
    auto wa = Typed<Napi::Float32Array>(o, "w", op);
    const int64_t rows = (int64_t)Num(o, "rows", op), cols = (int64_t)Num(o, "cols", op), step = std::max<int64_t>(1, (int64_t)Num(o, "rowStep", op));
    const int bits = (int)Num(o, "bits", op);
    const double a = Num(o, "exponent", op);
    const int threads = std::max(1, (int)Num(o, "threads", op));
    Napi::Value dv = o.Get("weights");
    const double *d = dv.IsTypedArray() ? dv.As<Napi::Float64Array>().Data() : nullptr;
    if ((int64_t)wa.ElementLength() != rows * cols || bits < 2 || bits > 8 || !(a > 0) || (d && (int64_t)dv.As<Napi::Float64Array>().ElementLength() != cols))
        throw Napi::RangeError::New(env, "powerGridError: the arrays and sizes do not fit together");
    const float *w = wa.Data();
    const int qmax = (1 << (bits - 1)) - 1;
    std::vector<double> root(qmax + 1);  // q^{1/a}
    for (int q = 0; q <= qmax; q++) root[q] = std::pow((double)q, 1 / a);
    const int64_t sampled = (rows + step - 1) / step;
    std::vector<double> sums(threads, 0.0);
    auto work = [&](int k, int64_t s0, int64_t s1) {
        double sum = 0;
        for (int64_t si = s0; si < s1; si++) {
            const float *row = w + si * step * cols;
            double m = 0;
            for (int64_t j = 0; j < cols; j++) m = std::max(m, (double)std::fabs(row[j]));
            const double s = std::pow(m, a) / qmax, alpha = s == 0 ? 0 : (double)(float)std::pow(s, 1 / a);  // stored as F32
            for (int64_t j = 0; j < cols; j++) {
                const double x = row[j], ax = std::fabs(x);
                double v = 0;
                if (s != 0 && ax > 0) {
                    const double t = std::pow(ax, a) / s;
                    const double q = std::floor((x < 0 ? -t : t) + 0.5);
                    const int qi = (int)std::max<double>(-qmax, std::min<double>(qmax, q));
                    v = alpha * (qi < 0 ? -root[-qi] : root[qi]);
                }
                const double e = v - x;
                sum += (d ? d[j] : 1.0) * e * e;
            }
        }
        sums[k] = sum;
    };
    SplitRows(sampled, threads, work);
    double total = 0;
    for (double v : sums) total += v;
    return Napi::Number::New(env, total);
}

}  // namespace

namespace hone {
void InitCompress(Napi::Env env, Napi::Object exports) {
    exports.Set("learnBlock", Napi::Function::New(env, LearnBlock));
    exports.Set("icbsEpoch", Napi::Function::New(env, IcbsEpoch));
    exports.Set("powerGridError", Napi::Function::New(env, PowerGridError));
}
}  // namespace hone
