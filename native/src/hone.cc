// Hone's native core: a thin N-API binding over ggml.
//
// JavaScript builds graphs once (electron/lab/model) and computes them many times; this file only
// forwards to ggml. Tensors cross the boundary as Napi::External<ggml_tensor>, valid while the
// Context that made them lives. Nothing here loops over elements except the file loader, the
// packing of Q8_0 weights, and the CPU kernels of q8_gemm.h and outer_kernel.h (compress.cc holds
// the compression kernels that no graph can express).

#include <napi.h>

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#ifdef HONE_BLAS
#include "ggml-backend-impl.h"
#include "ggml-blas.h"
#endif
#include "outer_kernel.h"
#include "q8_gemm.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <chrono>
#include <string>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace hone {
void InitIo(Napi::Env env, Napi::Object exports);  // io.cc: asynchronous file I/O
void InitCompress(Napi::Env env, Napi::Object exports);  // compress.cc: learned codes' block kernel
}

namespace {

bool g_verbose = false;
bool g_loading = false;  // backends that cannot load (no driver) are reported by the caller, not logged

void log_callback(enum ggml_log_level level, const char *text, void *) {
    if (g_verbose || (level == GGML_LOG_LEVEL_ERROR && !g_loading)) fputs(text, stderr);
}

void abort_callback(const char *message) {
    fprintf(stderr, "hone: the ggml engine stopped on an internal check: %s\n", message);
}

ggml_tensor *T(const Napi::Value &v) {
    if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a tensor handle");
    return v.As<Napi::External<ggml_tensor>>().Data();
}

ggml_tensor *TorNull(const Napi::Value &v) { return v.IsNull() || v.IsUndefined() ? nullptr : T(v); }

Napi::Value Wrap(Napi::Env env, ggml_tensor *t) {
    if (!t) throw Napi::Error::New(env, "ggml returned no tensor");
    return Napi::External<ggml_tensor>::New(env, t);
}

int64_t I(const Napi::Array &a, uint32_t i) { return a.Get(i).As<Napi::Number>().Int64Value(); }
float F(const Napi::Array &a, uint32_t i) { return a.Get(i).As<Napi::Number>().FloatValue(); }

// ---------------------------------------------------------------------------------------------
// Backends and devices

Napi::Value LoadBackends(const Napi::CallbackInfo &info) {
    // loadBackends(cpuDir, extraLibPaths[]): loads the best CPU variant found in cpuDir, then each
    // GPU backend library by path. Returns the names of the registered backends.
    Napi::Env env = info.Env();
    std::string dir = info[0].As<Napi::String>();
    g_loading = true;
    ggml_backend_load_all_from_path(dir.c_str());
    Napi::Array extra = info[1].As<Napi::Array>();
    Napi::Array failed = Napi::Array::New(env);
    for (uint32_t i = 0; i < extra.Length(); i++) {
        std::string path = extra.Get(i).As<Napi::String>();
        if (!ggml_backend_load(path.c_str())) failed.Set(failed.Length(), path);
    }
    g_loading = false;
    return failed;
}

Napi::Value Devices(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        ggml_backend_dev_props props;
        ggml_backend_dev_get_props(dev, &props);
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", props.name);
        o.Set("description", props.description ? props.description : "");
        o.Set("backend", ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)));
        const char *type = props.type == GGML_BACKEND_DEVICE_TYPE_CPU    ? "cpu"
                           : props.type == GGML_BACKEND_DEVICE_TYPE_GPU  ? "gpu"
                           : props.type == GGML_BACKEND_DEVICE_TYPE_IGPU ? "igpu"
                                                                         : "accel";
        o.Set("type", type);
        o.Set("memoryFree", (double)props.memory_free);
        o.Set("memoryTotal", (double)props.memory_total);
        out.Set(out.Length(), o);
    }
    return out;
}

Napi::Value SetVerbose(const Napi::CallbackInfo &info) {
    g_verbose = info[0].As<Napi::Boolean>();
    return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Types: sizes, quantize, dequantize

Napi::Value TypeInfo(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    int type = info[0].As<Napi::Number>().Int32Value();
    if (type < 0 || type >= GGML_TYPE_COUNT) return env.Null();
    const ggml_type_traits *tr = ggml_get_type_traits((ggml_type)type);
    if (!tr || !tr->type_name || tr->blck_size == 0) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", tr->type_name);
    o.Set("blockSize", (double)tr->blck_size);
    o.Set("typeSize", (double)tr->type_size);
    o.Set("quantized", tr->is_quantized);
    o.Set("canDequantize", tr->to_float != nullptr);
    o.Set("needsImatrix", ggml_quantize_requires_imatrix((ggml_type)type));
    return o;
}

Napi::Value Quantize(const Napi::CallbackInfo &info) {
    // quantize(type, src: Float32Array, nRows, nPerRow) -> Buffer in the ggml layout of `type`
    Napi::Env env = info.Env();
    ggml_type type = (ggml_type)info[0].As<Napi::Number>().Int32Value();
    Napi::Float32Array src = info[1].As<Napi::Float32Array>();
    int64_t nrows = info[2].As<Napi::Number>().Int64Value();
    int64_t nper = info[3].As<Napi::Number>().Int64Value();
    if ((int64_t)src.ElementLength() != nrows * nper) throw Napi::RangeError::New(env, "quantize: size mismatch");
    if (nper % ggml_blck_size(type) != 0) throw Napi::RangeError::New(env, "quantize: row length is not a multiple of the block size");
    size_t bytes = ggml_row_size(type, nper) * nrows;
    Napi::Buffer<uint8_t> dst = Napi::Buffer<uint8_t>::New(env, bytes);
    if (type == GGML_TYPE_F32) {
        memcpy(dst.Data(), src.Data(), bytes);
    } else {
        ggml_quantize_chunk(type, src.Data(), dst.Data(), 0, nrows, nper, nullptr);
    }
    return dst;
}

// randomTensor(type, nRows, nPerRow, seed, std, mean, threads) -> Buffer in the ggml layout of `type`:
// make-tiny's seeded normal weights (model/tiny.ts randn: mulberry32 and Box-Muller, value for value),
// generated and quantized a row range per thread, so no F32 copy of the tensor is ever whole. The
// generator's state after k draws is seed + k·0x6d2b79f5, so each row starts where the sequence is.
Napi::Value RandomTensor(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    ggml_type type = (ggml_type)info[0].As<Napi::Number>().Int32Value();
    int64_t nrows = info[1].As<Napi::Number>().Int64Value(), nper = info[2].As<Napi::Number>().Int64Value();
    uint32_t seed = info[3].As<Napi::Number>().Uint32Value();
    double std_ = info[4].As<Napi::Number>().DoubleValue(), mean = info[5].As<Napi::Number>().DoubleValue();
    int threads = std::max(1, info[6].As<Napi::Number>().Int32Value());
    if (nrows < 1 || nper < 1 || nper % ggml_blck_size(type) != 0) throw Napi::RangeError::New(env, "randomTensor: rows must be whole blocks of the type");
    size_t row_bytes = ggml_row_size(type, nper);
    Napi::Buffer<uint8_t> dst = Napi::Buffer<uint8_t>::New(env, row_bytes * nrows);
    if (type != GGML_TYPE_F32) ggml_quantize_init(type);
    // the k-th draw (1-based) of mulberry32 from `seed`, as a double in [0, 1)
    auto draw = [seed](uint64_t k) {
        uint32_t t = seed + (uint32_t)(k * 0x6d2b79f5ull);
        t = (uint32_t)((t ^ (t >> 15)) * (t | 1u));
        t ^= t + (uint32_t)((t ^ (t >> 7)) * (t | 61u));
        return (double)(t ^ (t >> 14)) / 4294967296.0;
    };
    auto work = [&](int64_t r0, int64_t r1) {
        std::vector<float> row(nper);
        for (int64_t r = r0; r < r1; r++) {
            // value i is half of pair i/2 (draws 2p+1, 2p+2): cos for even i, sin for odd; a pair's
            // draws, log and square root are computed once
            uint64_t i0 = (uint64_t)r * nper;
            for (int64_t j = 0; j < nper;) {
                uint64_t i = i0 + j, pair = i / 2;
                double u = std::max(draw(2 * pair + 1), 1e-12), v = draw(2 * pair + 2);
                double rr = std_ * std::sqrt(-2 * std::log(u)), a = 2 * M_PI * v;
                if (i % 2 == 0) {
                    row[j++] = (float)(mean + rr * std::cos(a));
                    if (j < nper) row[j++] = (float)(mean + rr * std::sin(a));
                } else {
                    row[j++] = (float)(mean + rr * std::sin(a));
                }
            }
            uint8_t *out = dst.Data() + row_bytes * r;
            if (type == GGML_TYPE_F32) memcpy(out, row.data(), row_bytes);
            else ggml_quantize_chunk(type, row.data(), out, 0, 1, nper, nullptr);
        }
    };
    std::vector<std::thread> pool;
    int64_t per = (nrows + threads - 1) / threads;
    for (int k = 0; k < threads && k * per < nrows; k++) pool.emplace_back(work, k * per, std::min(nrows, (k + 1) * per));
    for (auto &t : pool) t.join();
    return dst;
}

Napi::Value Dequantize(const Napi::CallbackInfo &info) {
    // dequantize(type, src: Uint8Array, n) -> Float32Array
    Napi::Env env = info.Env();
    ggml_type type = (ggml_type)info[0].As<Napi::Number>().Int32Value();
    Napi::Uint8Array src = info[1].As<Napi::Uint8Array>();
    int64_t n = info[2].As<Napi::Number>().Int64Value();
    if (ggml_row_size(type, n) > src.ByteLength()) throw Napi::RangeError::New(env, "dequantize: source too short");
    Napi::Float32Array out = Napi::Float32Array::New(env, n);
    if (type == GGML_TYPE_F32) {
        memcpy(out.Data(), src.Data(), n * 4);
    } else {
        const ggml_type_traits *tr = ggml_get_type_traits(type);
        if (!tr->to_float) throw Napi::Error::New(env, std::string("cannot dequantize type ") + ggml_type_name(type));
        tr->to_float(src.Data(), out.Data(), n);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Int8 products through Q8_0 frozen weights (q8_gemm.h): packing, and two ggml custom ops that the
// CPU backend runs on its threads (quantize the activations, then the product)

void Q8QuantizeOp(ggml_tensor *dst, int ith, int nth, void *) {
    const ggml_tensor *x = dst->src[0];
    const int64_t m = x->ne[1], per = (m + nth - 1) / nth, m0 = std::min(m, ith * per), m1 = std::min(m, m0 + per);
    const bool residual = dst->ne[1] == 2 * m;
    hone::q8::quantize((const float *)x->data, x->nb[1] / sizeof(float), x->ne[0], m0, m1, (uint8_t *)dst->data, residual ? m : 0);
}

void Q8GemmOp(ggml_tensor *dst, int ith, int nth, void *) {
    const ggml_tensor *pack = dst->src[0], *xq = dst->src[1];
    hone::q8::gemm((const uint8_t *)pack->data, pack->ne[1], pack->ne[2], (const uint8_t *)xq->data, xq->ne[1], (float *)dst->data, dst->ne[0], ith, nth);
}

// x F32 [k, m] (k a multiple of 32, rows contiguous) -> I8 [40·k/32, m], or with `residual`
// [40·k/32, 2m]: the columns, then their rounding errors quantized again
ggml_tensor *Q8Quantize(Napi::Env env, ggml_context *c, ggml_tensor *x, bool residual) {
    if (x->type != GGML_TYPE_F32 || x->ne[0] % hone::q8::kBlock || x->nb[0] != sizeof(float) || x->nb[1] % sizeof(float) || x->ne[2] != 1 || x->ne[3] != 1)
        throw Napi::Error::New(env, "q8_quantize: needs an F32 matrix whose rows are contiguous and a multiple of 32 long");
    ggml_tensor *args[] = {x};
    return ggml_custom_4d(c, GGML_TYPE_I8, x->ne[0] / hone::q8::kBlock * hone::q8::kXBytes, x->ne[1] * (residual ? 2 : 1), 1, 1, args, 1, Q8QuantizeOp, GGML_N_TASKS_MAX, nullptr);
}

// pack I8 [576, nb, groups] (packQ8), xq I8 [40·nb, m] (q8_quantize) -> F32 [rows, m]
ggml_tensor *Q8Gemm(Napi::Env env, ggml_context *c, ggml_tensor *pack, ggml_tensor *xq, int64_t rows) {
    if (pack->type != GGML_TYPE_I8 || pack->ne[0] != hone::q8::kGroupBytes || xq->type != GGML_TYPE_I8 || xq->ne[0] != pack->ne[1] * hone::q8::kXBytes || rows > pack->ne[2] * hone::q8::kRows)
        throw Napi::Error::New(env, "q8_gemm: the pack and the quantized activations do not fit together");
    ggml_tensor *args[] = {pack, xq};
    return ggml_custom_4d(c, GGML_TYPE_F32, rows, xq->ne[1], 1, 1, args, 2, Q8GemmOp, GGML_N_TASKS_MAX, nullptr);
}

Napi::Value Int8Supported(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), hone::q8::supported()); }

Napi::Value PackQ8(const Napi::CallbackInfo &info) {
    // packQ8(src Q8_0 [k, n], dst I8, transposed): dst = the pack of W (rows n, reduction k), or with
    // `transposed` of Wᵀ (rows k, reduction n; n a multiple of 32), requantized per 32 values of n
    Napi::Env env = info.Env();
    const ggml_tensor *src = T(info[0]);
    ggml_tensor *dst = T(info[1]);
    const bool transposed = info[2].As<Napi::Boolean>();
    namespace q8 = hone::q8;
    const int64_t k = src->ne[0], n = src->ne[1];
    const int64_t rows = transposed ? k : n, red = transposed ? n : k, nb = red / q8::kBlock, groups = q8::groupsFor(rows);
    if (src->type != GGML_TYPE_Q8_0 || src->ne[2] != 1 || src->ne[3] != 1 || !ggml_is_contiguous(src) || red % q8::kBlock)
        throw Napi::Error::New(env, std::string("packQ8: ") + ggml_get_name(src) + " is not a Q8_0 matrix whose reduction is a multiple of 32");
    if (dst->type != GGML_TYPE_I8 || dst->ne[0] != q8::kGroupBytes || dst->ne[1] != nb || dst->ne[2] != groups)
        throw Napi::Error::New(env, "packQ8: the destination's shape is not [576, blocks, groups]");
    if (!src->buffer || !dst->buffer || !ggml_backend_buffer_is_host(src->buffer) || !ggml_backend_buffer_is_host(dst->buffer))
        throw Napi::Error::New(env, "packQ8: both tensors must be allocated in host memory (the CPU engine)");
    struct Block { ggml_fp16_t d; int8_t q[32]; };
    static_assert(sizeof(Block) == 34, "Q8_0 block layout");
    const Block *W = (const Block *)src->data;  // row r of W: k/32 blocks
    uint8_t *out = (uint8_t *)dst->data;
    const int64_t kb = k / q8::kBlock;  // blocks per row of W
    auto pack = [&](int64_t g0, int64_t g1) {
        const int8_t zero[32] = {};
        float v[q8::kRows][32];
        int8_t q[32];
        for (int64_t g = g0; g < g1; g++) {
            for (int64_t b = 0; b < nb; b++) {
                uint8_t *block = out + (g * nb + b) * q8::kGroupBytes;
                if (!transposed) {
                    for (int rr = 0; rr < q8::kRows; rr++) {
                        const int64_t r = g * q8::kRows + rr;
                        if (r < rows) q8::putRow(block, rr, W[r * kb + b].q, ggml_fp16_to_fp32(W[r * kb + b].d));
                        else q8::putRow(block, rr, zero, 0);
                    }
                    continue;
                }
                // Wᵀ[r][32b + i] = W[32b + i][r]: the 16 rows r of a group lie in one block of each row of W
                const int64_t r0 = g * q8::kRows;
                for (int i = 0; i < 32; i++) {
                    const Block &wb = W[(32 * b + i) * kb + std::min(r0, k - 1) / 32];
                    const float d = ggml_fp16_to_fp32(wb.d);
                    for (int rr = 0; rr < q8::kRows; rr++) v[rr][i] = r0 + rr < rows ? d * wb.q[(r0 + rr) % 32] : 0;
                }
                for (int rr = 0; rr < q8::kRows; rr++) {
                    const float d = q8::quantizeBlock(v[rr], q);
                    q8::putRow(block, rr, q, d);
                }
            }
        }
    };
    // on every core: a 7B model's packs are some 14 billion values
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), groups / 4));
    std::vector<std::thread> threads;
    for (int64_t t = 1; t < nt; t++) threads.emplace_back(pack, groups * t / nt, groups * (t + 1) / nt);
    pack(0, groups / nt);
    for (auto &th : threads) th.join();
    return env.Undefined();
}

// Attention's causal sums over queries (dV, dK) or keys (O, dQ) on the CPU (outer_kernel.h):
// over queries a [hd, T_q, Ga], p [T_k, T_q, G] -> [hd, T_k, G]; over keys a [hd, T_k, Ga],
// p [T_k, T_q, G] -> [hd, T_q, G]; head g of p reads head g / (G / Ga) of a
const hone::outer::Over kOver[2] = {hone::outer::Over::Queries, hone::outer::Over::Keys};

void AttnSumOp(ggml_tensor *dst, int ith, int nth, void *userdata) {
    const ggml_tensor *a = dst->src[0], *p = dst->src[1];
    const hone::outer::Over over = *(const hone::outer::Over *)userdata;
    const bool overQueries = over == hone::outer::Over::Queries;
    hone::outer::run((const float *)a->data, a->nb[1] / sizeof(float), a->nb[2] / sizeof(float), a->ne[2], (const float *)p->data, p->nb[1] / sizeof(float), p->nb[2] / sizeof(float),
                     a->ne[0], overQueries ? p->ne[0] : p->ne[1], overQueries ? p->ne[1] : p->ne[0], p->ne[2], over, (float *)dst->data, ith, nth);
}

ggml_tensor *AttnSum(Napi::Env env, ggml_context *c, ggml_tensor *a, ggml_tensor *p, bool overKeys) {
    const int64_t nc = overKeys ? p->ne[0] : p->ne[1];
    const bool ok = a->type == GGML_TYPE_F32 && p->type == GGML_TYPE_F32 && a->nb[0] == sizeof(float) && p->nb[0] == sizeof(float) && a->ne[1] == nc &&
                    a->ne[2] > 0 && p->ne[2] % a->ne[2] == 0 && a->ne[3] == 1 && p->ne[3] == 1 && hone::outer::fits(a->ne[0]) && a->nb[1] % sizeof(float) == 0 &&
                    a->nb[2] % sizeof(float) == 0 && p->nb[1] % sizeof(float) == 0 && p->nb[2] % sizeof(float) == 0;
    if (!ok) throw Napi::Error::New(env, "attn_sum: needs F32 a [hd, T, Ga] (hd a multiple of 16) and p [T_k, T_q, G] (G a multiple of Ga) with contiguous rows");
    ggml_tensor *args[] = {a, p};
    return ggml_custom_4d(c, GGML_TYPE_F32, a->ne[0], overKeys ? p->ne[1] : p->ne[0], p->ne[2], 1, args, 2, AttnSumOp, GGML_N_TASKS_MAX, (void *)&kOver[overKeys ? 1 : 0]);
}

Napi::Value AttnSumSupported(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), hone::outer::supported()); }

// ---------------------------------------------------------------------------------------------
// The op table: each op's tensor operands (in order; optional ones passed as null) and its named
// numbers. A call with another count of tensors, a missing number or an unknown one is refused.

struct OpArgs {
    Napi::Env env;
    std::string op;
    Napi::Array ts;
    Napi::Object ns;
    ggml_tensor *t(uint32_t i) const { return TorNull(ts.Get(i)); }
    Napi::Value arg(const char *name) const {
        Napi::Value v = ns.Get(name);
        if (v.IsUndefined()) throw Napi::TypeError::New(env, op + " needs the argument '" + name + "'");
        return v;
    }
    double num(const char *name) const {
        Napi::Value v = arg(name);
        if (!v.IsNumber()) throw Napi::TypeError::New(env, op + ": '" + name + "' must be a number");
        return v.As<Napi::Number>().DoubleValue();
    }
    float f(const char *name) const { return (float)num(name); }
    int64_t i(const char *name) const { return (int64_t)num(name); }
    std::vector<int64_t> ints(const char *name) const {
        Napi::Value v = arg(name);
        if (!v.IsArray()) throw Napi::TypeError::New(env, op + ": '" + name + "' must be an array of numbers");
        Napi::Array arr = v.As<Napi::Array>();
        std::vector<int64_t> out(arr.Length());
        for (uint32_t k = 0; k < arr.Length(); k++) out[k] = I(arr, k);
        return out;
    }
};

struct OpSpec {
    uint32_t tensors;
    std::vector<const char *> numbers;
    ggml_tensor *(*make)(ggml_context *c, const OpArgs &a);
};

ggml_tensor *RopeOp(ggml_context *c, const OpArgs &a, bool back) {
    auto fn = back ? ggml_rope_ext_back : ggml_rope_ext;
    return fn(c, a.t(0), a.t(1), a.t(2), (int)a.i("n_dims"), (int)a.i("mode"), (int)a.i("n_ctx_orig"), a.f("freq_base"), a.f("freq_scale"),
              a.f("ext_factor"), a.f("attn_factor"), a.f("beta_fast"), a.f("beta_slow"));
}

ggml_tensor *ReshapeOp(ggml_context *c, const OpArgs &a) {
    std::vector<int64_t> ne = a.ints("ne");
    switch (ne.size()) {
        case 1: return ggml_reshape_1d(c, a.t(0), ne[0]);
        case 2: return ggml_reshape_2d(c, a.t(0), ne[0], ne[1]);
        case 3: return ggml_reshape_3d(c, a.t(0), ne[0], ne[1], ne[2]);
        case 4: return ggml_reshape_4d(c, a.t(0), ne[0], ne[1], ne[2], ne[3]);
        default: throw Napi::RangeError::New(a.env, "reshape takes 1 to 4 dimensions");
    }
}

ggml_tensor *ViewOp(ggml_context *c, const OpArgs &a) {
    // ne: 1-4 dims; nb: the byte strides of dims 1.. (one fewer); offset in bytes
    std::vector<int64_t> ne = a.ints("ne"), nb = a.ints("nb");
    size_t off = (size_t)a.i("offset");
    if (ne.empty() || ne.size() > 4 || nb.size() + 1 != ne.size()) throw Napi::RangeError::New(a.env, "view takes 1 to 4 dims in ne and one stride fewer in nb");
    ggml_tensor *t = a.t(0);
    switch (ne.size()) {
        case 1: return ggml_view_1d(c, t, ne[0], off);
        case 2: return ggml_view_2d(c, t, ne[0], ne[1], nb[0], off);
        case 3: return ggml_view_3d(c, t, ne[0], ne[1], ne[2], nb[0], nb[1], off);
        default: return ggml_view_4d(c, t, ne[0], ne[1], ne[2], ne[3], nb[0], nb[1], nb[2], off);
    }
}

const std::unordered_map<std::string, OpSpec> &OpTable() {
    using A = const OpArgs &;
    using C = ggml_context *;
    static const std::unordered_map<std::string, OpSpec> table = {
        {"mul_mat", {2, {}, [](C c, A a) { return ggml_mul_mat(c, a.t(0), a.t(1)); }}},
        {"out_prod", {2, {}, [](C c, A a) { return ggml_out_prod(c, a.t(0), a.t(1)); }}},
        {"add", {2, {}, [](C c, A a) { return ggml_add(c, a.t(0), a.t(1)); }}},
        {"add_inplace", {2, {}, [](C c, A a) { return ggml_add_inplace(c, a.t(0), a.t(1)); }}},
        {"sub", {2, {}, [](C c, A a) { return ggml_sub(c, a.t(0), a.t(1)); }}},
        {"mul", {2, {}, [](C c, A a) { return ggml_mul(c, a.t(0), a.t(1)); }}},
        {"div", {2, {}, [](C c, A a) { return ggml_div(c, a.t(0), a.t(1)); }}},
        {"scale", {1, {"s"}, [](C c, A a) { return ggml_scale(c, a.t(0), a.f("s")); }}},
        {"scale_bias", {1, {"s", "bias"}, [](C c, A a) { return ggml_scale_bias(c, a.t(0), a.f("s"), a.f("bias")); }}},
        {"sqr", {1, {}, [](C c, A a) { return ggml_sqr(c, a.t(0)); }}},
        {"sqrt", {1, {}, [](C c, A a) { return ggml_sqrt(c, a.t(0)); }}},
        {"log", {1, {}, [](C c, A a) { return ggml_log(c, a.t(0)); }}},
        {"sum", {1, {}, [](C c, A a) { return ggml_sum(c, a.t(0)); }}},
        {"sum_rows", {1, {}, [](C c, A a) { return ggml_sum_rows(c, a.t(0)); }}},
        {"silu", {1, {}, [](C c, A a) { return ggml_silu(c, a.t(0)); }}},
        {"silu_back", {2, {}, [](C c, A a) { return ggml_silu_back(c, a.t(0), a.t(1)); }}},
        {"swiglu", {2, {}, [](C c, A a) { return ggml_swiglu_split(c, a.t(0), a.t(1)); }}},
        {"gelu", {1, {}, [](C c, A a) { return ggml_gelu(c, a.t(0)); }}},
        {"geglu", {2, {}, [](C c, A a) { return ggml_geglu_split(c, a.t(0), a.t(1)); }}},
        {"tanh", {1, {}, [](C c, A a) { return ggml_tanh(c, a.t(0)); }}},
        {"rms_norm", {1, {"eps"}, [](C c, A a) { return ggml_rms_norm(c, a.t(0), a.f("eps")); }}},
        {"rms_norm_back", {2, {"eps"}, [](C c, A a) { return ggml_rms_norm_back(c, a.t(0), a.t(1), a.f("eps")); }}},
        {"get_rows", {2, {}, [](C c, A a) { return ggml_get_rows(c, a.t(0), a.t(1)); }}},
        {"set_rows", {3, {}, [](C c, A a) { return ggml_set_rows(c, a.t(0), a.t(1), a.t(2)); }}},
        {"get_rows_back", {3, {}, [](C c, A a) { return ggml_get_rows_back(c, a.t(0), a.t(1), a.t(2)); }}},
        {"soft_max", {1, {}, [](C c, A a) { return ggml_soft_max(c, a.t(0)); }}},
        {"soft_max_ext", {2, {"scale", "max_bias"}, [](C c, A a) { return ggml_soft_max_ext(c, a.t(0), a.t(1), a.f("scale"), a.f("max_bias")); }}},
        {"soft_max_ext_back", {2, {"scale", "max_bias"}, [](C c, A a) { return ggml_soft_max_ext_back(c, a.t(0), a.t(1), a.f("scale"), a.f("max_bias")); }}},
        {"rope_ext", {3, {"n_dims", "mode", "n_ctx_orig", "freq_base", "freq_scale", "ext_factor", "attn_factor", "beta_fast", "beta_slow"}, [](C c, A a) { return RopeOp(c, a, false); }}},
        {"rope_ext_back", {3, {"n_dims", "mode", "n_ctx_orig", "freq_base", "freq_scale", "ext_factor", "attn_factor", "beta_fast", "beta_slow"}, [](C c, A a) { return RopeOp(c, a, true); }}},
        {"cross_entropy_loss", {2, {}, [](C c, A a) { return ggml_cross_entropy_loss(c, a.t(0), a.t(1)); }}},
        {"cont", {1, {}, [](C c, A a) { return ggml_cont(c, a.t(0)); }}},
        {"cast", {1, {"type"}, [](C c, A a) { return ggml_cast(c, a.t(0), (ggml_type)a.i("type")); }}},
        {"cpy", {2, {}, [](C c, A a) { return ggml_cpy(c, a.t(0), a.t(1)); }}},
        {"transpose", {1, {}, [](C c, A a) { return ggml_transpose(c, a.t(0)); }}},
        {"permute", {1, {"axes"}, [](C c, A a) {
             std::vector<int64_t> p = a.ints("axes");
             if (p.size() != 4) throw Napi::RangeError::New(a.env, "permute takes 4 axes");
             return ggml_permute(c, a.t(0), (int)p[0], (int)p[1], (int)p[2], (int)p[3]);
         }}},
        {"reshape", {1, {"ne"}, ReshapeOp}},
        {"view", {1, {"ne", "nb", "offset"}, ViewOp}},
        {"repeat", {2, {}, [](C c, A a) { return ggml_repeat(c, a.t(0), a.t(1)); }}},
        {"attn_sum", {2, {"over_keys"}, [](C c, A a) { return AttnSum(a.env, c, a.t(0), a.t(1), a.i("over_keys") != 0); }}},
        {"q8_quantize", {1, {"residual"}, [](C c, A a) { return Q8Quantize(a.env, c, a.t(0), a.i("residual") != 0); }}},
        {"q8_gemm", {2, {"rows"}, [](C c, A a) { return Q8Gemm(a.env, c, a.t(0), a.t(1), a.i("rows")); }}},
        {"opt_step_adamw", {5, {}, [](C c, A a) { return ggml_opt_step_adamw(c, a.t(0), a.t(1), a.t(2), a.t(3), a.t(4)); }}},
    };
    return table;
}

// ---------------------------------------------------------------------------------------------
// Context: a ggml context (metadata only; data lives in backend buffers) and graph building

class Context : public Napi::ObjectWrap<Context> {
  public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "Context",
                           {
                               InstanceMethod("newTensor", &Context::NewTensor),
                               InstanceMethod("op", &Context::Op),
                               InstanceMethod("free", &Context::Free),
                           });
    }
    explicit Context(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Context>(info) {
        size_t max_tensors = info[0].As<Napi::Number>().Int64Value();
        ggml_init_params p = {max_tensors * ggml_tensor_overhead() + ggml_graph_overhead_custom(1 << 16, true) * 4, nullptr, true};
        ctx_ = ggml_init(p);
        if (!ctx_) throw Napi::Error::New(info.Env(), "ggml_init failed");
    }
    ~Context() override { if (ctx_) ggml_free(ctx_); }
    ggml_context *ctx() const { return ctx_; }

  private:
    ggml_context *ctx_ = nullptr;

    Napi::Value Free(const Napi::CallbackInfo &info) {
        if (ctx_) ggml_free(ctx_);
        ctx_ = nullptr;
        return info.Env().Undefined();
    }

    Napi::Value NewTensor(const Napi::CallbackInfo &info) {
        // newTensor(type, ne[], name, role) role: 0 plain, 1 input, 2 param
        ggml_type type = (ggml_type)info[0].As<Napi::Number>().Int32Value();
        Napi::Array ne = info[1].As<Napi::Array>();
        int64_t d[4] = {1, 1, 1, 1};
        for (uint32_t i = 0; i < ne.Length() && i < 4; i++) d[i] = I(ne, i);
        ggml_tensor *t = ggml_new_tensor(ctx_, type, (int)ne.Length(), d);
        std::string name = info[2].As<Napi::String>();
        ggml_set_name(t, name.c_str());
        int role = info[3].As<Napi::Number>().Int32Value();
        if (role == 1) ggml_set_input(t);
        if (role == 2) ggml_set_param(t);
        return Wrap(info.Env(), t);
    }

    // op(name, tensors[], numbers{}) -> tensor, through the op table below; the typed wrappers with
    // their shape contracts live in electron/lab/engine/graph.ts.
    Napi::Value Op(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        OpArgs a{env, info[0].As<Napi::String>(), info[1].As<Napi::Array>(), info[2].As<Napi::Object>()};
        const auto &table = OpTable();
        auto it = table.find(a.op);
        if (it == table.end()) throw Napi::Error::New(env, "unknown op " + a.op);
        const OpSpec &spec = it->second;
        if (a.ts.Length() != spec.tensors)
            throw Napi::TypeError::New(env, a.op + " takes " + std::to_string(spec.tensors) + " tensors, got " + std::to_string(a.ts.Length()));
        Napi::Array keys = a.ns.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); i++) {
            std::string k = keys.Get(i).As<Napi::String>();
            bool known = false;
            for (const char *n : spec.numbers) known = known || k == n;
            if (!known) throw Napi::TypeError::New(env, a.op + " has no argument '" + k + "'");
        }
        return Wrap(env, spec.make(ctx_, a));
    }
};

Napi::Value TensorInfo(const Napi::CallbackInfo &info) {
    // tensorInfo(t) -> [type, ne0, ne1, ne2, ne3, nb0, nb1, nb2, nb3, allocated]
    Napi::Env env = info.Env();
    ggml_tensor *t = T(info[0]);
    Napi::Array a = Napi::Array::New(env, 10);
    a.Set(0u, (double)t->type);
    for (int i = 0; i < 4; i++) a.Set(1 + i, (double)t->ne[i]);
    for (int i = 0; i < 4; i++) a.Set(5 + i, (double)t->nb[i]);
    a.Set(9u, t->buffer != nullptr || (t->view_src && t->view_src->buffer != nullptr));
    return a;
}

Napi::Value SetName(const Napi::CallbackInfo &info) {
    std::string name = info[1].As<Napi::String>();
    ggml_set_name(T(info[0]), name.c_str());
    return info.Env().Undefined();
}

Napi::Value MarkOutput(const Napi::CallbackInfo &info) {
    ggml_set_output(T(info[0]));
    return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Backend: one compute device (+ the CPU for ops the device lacks), its buffers and accounting

struct Buffer {
    ggml_backend_buffer_t buf;
    size_t bytes;
    std::string label;
};

#ifdef HONE_BLAS
// ggml's BLAS backend would take every large product, a quantized or F16 weight included, by
// dequantizing the weight and multiplying in F32. llama.cpp (node-llama-cpp's builds have no BLAS)
// multiplies those weights with its own kernels on activations rounded to the weight's dot type, so
// Hone's logits would differ from llama.cpp's, and from Hone's own build without OpenBLAS. Each
// engine therefore sees the BLAS device through this copy, which leaves products of non-F32 weights
// to ggml's CPU kernels unless the engine asks for BLAS on them (HONE_BLAS_WEIGHTS=any: measured).
struct BlasDevice {
    ggml_backend_device dev;  // first: ggml passes &dev back to supports_op
    bool any_weights;
    bool (*blas_supports_op)(ggml_backend_dev_t, const ggml_tensor *);
};

bool blas_supports_op(ggml_backend_dev_t dev, const ggml_tensor *op) {
    const BlasDevice *d = reinterpret_cast<const BlasDevice *>(dev);
    if (op->op == GGML_OP_MUL_MAT && op->src[0]->type != GGML_TYPE_F32 && !d->any_weights) return false;
    return d->blas_supports_op(dev, op);
}
#endif

class Backend : public Napi::ObjectWrap<Backend> {
  public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "Backend",
                           {
                               InstanceMethod("setThreads", &Backend::SetThreads),
                               InstanceMethod("allocContext", &Backend::AllocContext),
                               InstanceMethod("freeBuffer", &Backend::FreeBuffer),
                               InstanceMethod("memory", &Backend::Memory),
                               InstanceMethod("name", &Backend::Name),
                               InstanceMethod("free", &Backend::Free),
                           });
    }
    explicit Backend(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Backend>(info) {
        Napi::Env env = info.Env();
        std::string dev_name = info[0].As<Napi::String>();
        ggml_backend_dev_t dev = ggml_backend_dev_by_name(dev_name.c_str());
        if (!dev) throw Napi::Error::New(env, "no ggml device named " + dev_name);
        main_ = ggml_backend_dev_init(dev, nullptr);
        if (!main_) throw Napi::Error::New(env, "could not start device " + dev_name);
        if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) {
            cpu_ = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
            if (!cpu_) throw Napi::Error::New(env, "could not start the CPU backend");
        }
#ifdef HONE_BLAS
        // on the CPU, large F32 matmuls and outer products go to OpenBLAS (HONE_BLAS=0: ggml's own)
        const char *use = getenv("HONE_BLAS");
        // new Backend(name, { blas: false }): an engine of its own for work that computes beside the
        // main one (the CPU optimizer of streamed full-parameter training), off OpenBLAS's one pool
        bool want_blas = !(info.Length() > 1 && info[1].IsObject() && info[1].As<Napi::Object>().Has("blas") && !info[1].As<Napi::Object>().Get("blas").ToBoolean());
        if (!cpu_ && want_blas && !(use && std::string(use) == "0")) {
            blas_ = ggml_backend_blas_init();
            const char *weights = getenv("HONE_BLAS_WEIGHTS");
            blas_dev_.dev = *blas_->device;
            blas_dev_.blas_supports_op = blas_->device->iface.supports_op;
            blas_dev_.dev.iface.supports_op = blas_supports_op;
            blas_dev_.any_weights = weights && std::string(weights) == "any";
            blas_->device = &blas_dev_.dev;
        }
#endif
    }
    ~Backend() override { Release(); }

    // Schedulers are pooled by graph shape: a graph takes a free scheduler last used by a graph of
    // the same structure (so its buffers fit exactly), else a new one. A scheduler's buffers are never
    // freed or regrown while the device is open: on Vulkan (Mesa lavapipe) freeing or regrowing
    // compute buffers between graphs corrupted the heap. llama.cpp likewise keeps its scheduler,
    // reserved once, for a context's lifetime.
    static constexpr size_t kGraphSize = 1 << 17;
    static uint64_t shape_of(ggml_cgraph *graph) {
        uint64_t h = 1469598103934665603ull;
        auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
        auto add = [&](ggml_tensor *t) {
            mix((uint64_t)t->op);
            mix((uint64_t)t->type);
            for (int d = 0; d < 4; d++) mix((uint64_t)t->ne[d]);
            mix((uint64_t)t->flags);
        };
        // nodes with their wiring (which earlier node or outside tensor feeds each input)
        std::unordered_map<const ggml_tensor *, int> index;
        mix((uint64_t)ggml_graph_n_nodes(graph));
        for (int i = 0; i < ggml_graph_n_nodes(graph); i++) {
            ggml_tensor *t = ggml_graph_node(graph, i);
            index[t] = i;
            add(t);
            for (int j = 0; j < GGML_MAX_SRC && t->src[j]; j++) {
                auto it = index.find(t->src[j]);
                mix(it == index.end() ? ~0ull : (uint64_t)it->second);
            }
        }
        return h;
    }
    // `exact`: the graph computes as llama.cpp does (evaluation, perplexity), so OpenBLAS takes no
    // product: its F32 sums round differently from ggml's kernels, which attention's softmax can
    // amplify (measured: 1e-2 in a log-probability on a random Q4_K model against 2e-5 without)
    ggml_backend_sched_t take_sched(ggml_cgraph *graph, uint64_t *shape, bool exact) {
        *shape = shape_of(graph) ^ (exact ? 0x9e3779b97f4a7c15ull : 0);
        for (size_t i = 0; i < free_scheds_.size(); i++) {
            if (free_scheds_[i].second != *shape) continue;
            ggml_backend_sched_t s = free_scheds_[i].first;
            free_scheds_.erase(free_scheds_.begin() + i);
            return s;
        }
        std::vector<ggml_backend_t> backends = {main_};
        std::vector<ggml_backend_buffer_type_t> bufts = {ggml_backend_get_default_buffer_type(main_)};
        if (blas_ && !exact) {
            // BLAS first: the scheduler gives it the ops it supports (host memory, no copies)
            backends.insert(backends.begin(), blas_);
            bufts.insert(bufts.begin(), ggml_backend_get_default_buffer_type(main_));
        }
        if (cpu_) {
            // CPU fallbacks work in the device's pinned host memory when it has one, as llama.cpp does
            backends.push_back(cpu_);
            ggml_backend_buffer_type_t host = ggml_backend_dev_host_buffer_type(ggml_backend_get_device(main_));
            bufts.push_back(host ? host : ggml_backend_get_default_buffer_type(cpu_));
        }
        return ggml_backend_sched_new(backends.data(), bufts.data(), (int)backends.size(), kGraphSize, false, false);
    }
    void give_sched(ggml_backend_sched_t s, uint64_t shape) {
        ggml_backend_sched_reset(s);
        free_scheds_.push_back({s, shape});
    }
    size_t sched_bytes() const {
        size_t total = 0;
        for (auto s : all_scheds_) for (int i = 0; i < ggml_backend_sched_get_n_backends(s); i++) total += ggml_backend_sched_get_buffer_size(s, ggml_backend_sched_get_backend(s, i));
        return total;
    }
    void note_sched(ggml_backend_sched_t s) {
        for (auto x : all_scheds_) if (x == s) return;
        all_scheds_.push_back(s);
    }

    ggml_backend_t main() const { return main_; }
    bool alive() const { return main_ != nullptr; }
    ggml_backend_t cpu() const { return cpu_ ? cpu_ : main_; }
    bool is_cpu() const { return cpu_ == nullptr; }
    int threads() const { return threads_; }
    void account(size_t bytes, bool add) {
        current_ = add ? current_ + bytes : current_ - bytes;
        if (current_ > peak_) peak_ = current_;
    }

  private:
    ggml_backend_t main_ = nullptr, cpu_ = nullptr, blas_ = nullptr;
#ifdef HONE_BLAS
    BlasDevice blas_dev_{};
#endif
    std::vector<Buffer> buffers_;
    std::vector<std::pair<ggml_backend_sched_t, uint64_t>> free_scheds_;
    std::vector<ggml_backend_sched_t> all_scheds_;
    size_t current_ = 0, peak_ = 0;
    int threads_ = 0;
    ggml_threadpool_t pool_ = nullptr;

    // One persistent thread pool for the CPU backend. Without it ggml starts and joins its worker
    // threads at every compute, and the scheduler computes the CPU's part of a graph once per split
    // between BLAS and CPU nodes (about 500 times a training step). Its workers sleep as soon as a
    // compute ends (no polling): a spinning worker would take a core from OpenBLAS's threads (ggml's
    // default polling made a config-B step 2.5× slower; the pool without it makes config A's 7% faster).
    void UsePool(ggml_backend_reg_t reg, ggml_backend_t cpu) {
        using new_t = ggml_threadpool_t (*)(ggml_threadpool_params *);
        using set_t = void (*)(ggml_backend_t, ggml_threadpool_t);
        auto make = (new_t)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
        auto set = (set_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_cpu_set_threadpool");
        if (!make || !set || threads_ < 2) return;
        FreePool(reg);
        ggml_threadpool_params params = ggml_threadpool_params_default(threads_);
        params.poll = 0;
        pool_ = make(&params);
        if (pool_) set(cpu, pool_);
    }
    void FreePool(ggml_backend_reg_t reg) {
        if (!pool_) return;
        using free_t = void (*)(ggml_threadpool_t);
        using set_t = void (*)(ggml_backend_t, ggml_threadpool_t);
        auto set = (set_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_cpu_set_threadpool");
        if (set) set(cpu(), nullptr);
        auto fr = (free_t)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free");
        if (fr) fr(pool_);
        pool_ = nullptr;
    }

    void Release() {
        if (pool_) FreePool(ggml_backend_dev_backend_reg(ggml_backend_get_device(cpu())));
        for (auto s : all_scheds_) ggml_backend_sched_free(s);
        all_scheds_.clear();
        free_scheds_.clear();
        for (auto &b : buffers_) if (b.buf) ggml_backend_buffer_free(b.buf);
        buffers_.clear();
        if (blas_) ggml_backend_free(blas_);
        if (cpu_) ggml_backend_free(cpu_);
        if (main_) ggml_backend_free(main_);
        cpu_ = main_ = blas_ = nullptr;
    }
    Napi::Value Free(const Napi::CallbackInfo &info) { Release(); return info.Env().Undefined(); }

    Napi::Value Name(const Napi::CallbackInfo &info) { return Napi::String::New(info.Env(), std::string(ggml_backend_name(main_)) + (blas_ ? " + BLAS" : "")); }

    Napi::Value SetThreads(const Napi::CallbackInfo &info) {
        threads_ = info[0].As<Napi::Number>().Int32Value();
        ggml_backend_t cpu = this->cpu();
        ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(ggml_backend_get_device(cpu));
        auto fn = (ggml_backend_set_n_threads_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
        if (fn) fn(cpu, threads_);
        UsePool(reg, cpu);
#ifdef HONE_BLAS
        if (blas_) ggml_backend_blas_set_n_threads(blas_, threads_);
#endif
        return info.Env().Undefined();
    }

    Napi::Value AllocContext(const Napi::CallbackInfo &info) {
        // allocContext(ctx, label, onHost, zero) -> buffer id. Allocates every tensor of ctx that has
        // no data; with `zero`, the buffer starts as zeros (state that is read before it is written).
        Napi::Env env = info.Env();
        Context *c = Napi::ObjectWrap<Context>::Unwrap(info[0].As<Napi::Object>());
        std::string label = info[1].As<Napi::String>();
        bool host = info.Length() > 2 && info[2].ToBoolean();
        bool zero = info.Length() > 3 && info[3].ToBoolean();
        ggml_backend_buffer_type_t buft = host ? ggml_backend_get_default_buffer_type(cpu()) : ggml_backend_get_default_buffer_type(main_);
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(c->ctx(), buft);
        if (!buf) {
            size_t need = ggml_backend_alloc_ctx_tensors_from_buft_size(c->ctx(), buft);
            if (need == 0) return Napi::Number::New(env, -1);
            throw Napi::Error::New(env, "out of memory on " + std::string(ggml_backend_name(main_)) + ": " + label + " needs " + std::to_string(need >> 20) + " MiB");
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        if (zero) ggml_backend_buffer_clear(buf, 0);
        size_t bytes = ggml_backend_buffer_get_size(buf);
        buffers_.push_back({buf, bytes, label});
        account(bytes, true);
        return Napi::Number::New(env, (double)(buffers_.size() - 1));
    }

    Napi::Value FreeBuffer(const Napi::CallbackInfo &info) {
        size_t id = info[0].As<Napi::Number>().Int64Value();
        if (id < buffers_.size() && buffers_[id].buf) {
            ggml_backend_buffer_free(buffers_[id].buf);
            buffers_[id].buf = nullptr;
            account(buffers_[id].bytes, false);
        }
        return info.Env().Undefined();
    }

    Napi::Value Memory(const Napi::CallbackInfo &info) {
        // memory() -> { current, peak, buffers: [{label, bytes}] } (static buffers; graphs report their own)
        Napi::Env env = info.Env();
        Napi::Object o = Napi::Object::New(env);
        o.Set("current", (double)current_);
        o.Set("peak", (double)peak_);
        Napi::Array arr = Napi::Array::New(env);
        for (auto &b : buffers_) {
            if (!b.buf) continue;
            Napi::Object e = Napi::Object::New(env);
            e.Set("label", b.label);
            e.Set("bytes", (double)b.bytes);
            arr.Set(arr.Length(), e);
        }
        o.Set("buffers", arr);
        return o;
    }
};

// ---------------------------------------------------------------------------------------------
// Tensor data: set, get, load straight from a file

// ggml aborts on a tensor without memory; JavaScript gets an error saying what to do instead
ggml_tensor *Allocated(const Napi::Value &v) {
    ggml_tensor *t = T(v);
    ggml_backend_buffer_t buf = t->view_src ? t->view_src->buffer : t->buffer;
    if (!buf || !t->data) throw Napi::Error::New(v.Env(), std::string("tensor ") + t->name + " has no memory yet: allocate its context, or set graph inputs after the graph is built");
    return t;
}

// tensorHasMemory(t): whether the tensor has memory (a graph input no node reads gets none)
Napi::Value TensorHasMemory(const Napi::CallbackInfo &info) {
    ggml_tensor *t = T(info[0]);
    ggml_backend_buffer_t buf = t->view_src ? t->view_src->buffer : t->buffer;
    return Napi::Boolean::New(info.Env(), buf && t->data);
}

Napi::Value TensorSet(const Napi::CallbackInfo &info) {
    // tensorSet(t, data: TypedArray|Buffer, byteOffsetInTensor)
    ggml_tensor *t = Allocated(info[0]);
    Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
    size_t off = info.Length() > 2 ? info[2].As<Napi::Number>().Int64Value() : 0;
    uint8_t *data = (uint8_t *)arr.ArrayBuffer().Data() + arr.ByteOffset();
    size_t bytes = arr.ByteLength();
    if (off + bytes > ggml_nbytes(t)) throw Napi::RangeError::New(info.Env(), std::string("tensorSet: data larger than tensor ") + t->name);
    ggml_backend_tensor_set(t, data, off, bytes);
    return info.Env().Undefined();
}

Napi::Value TensorGet(const Napi::CallbackInfo &info) {
    // tensorGet(t) -> Float32Array (converted from the tensor's type) or raw Uint8Array if raw=true
    Napi::Env env = info.Env();
    ggml_tensor *t = Allocated(info[0]);
    bool raw = info.Length() > 1 && info[1].As<Napi::Boolean>();
    if (!ggml_is_contiguous(t)) throw Napi::Error::New(env, std::string("tensorGet: tensor is not contiguous: ") + t->name);
    size_t bytes = ggml_nbytes(t);
    if (raw || t->type == GGML_TYPE_F32) {
        Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, bytes);
        ggml_backend_tensor_get(t, ab.Data(), 0, bytes);
        if (raw) return Napi::Uint8Array::New(env, bytes, ab, 0);
        return Napi::Float32Array::New(env, bytes / 4, ab, 0);
    }
    std::vector<uint8_t> tmp(bytes);
    ggml_backend_tensor_get(t, tmp.data(), 0, bytes);
    int64_t n = ggml_nelements(t);
    Napi::Float32Array out = Napi::Float32Array::New(env, n);
    if (t->type == GGML_TYPE_I32) {
        for (int64_t i = 0; i < n; i++) out[i] = (float)((int32_t *)tmp.data())[i];
    } else {
        const ggml_type_traits *tr = ggml_get_type_traits(t->type);
        if (!tr->to_float) throw Napi::Error::New(env, "tensorGet: cannot convert type");
        tr->to_float(tmp.data(), out.Data(), n);
    }
    return out;
}

Napi::Value TensorRead(const Napi::CallbackInfo &info) {
    // tensorRead(t, first, count) -> Float32Array: elements [first, first + count) of a contiguous F32
    // tensor (a slab of a large one, without reading the rest back)
    Napi::Env env = info.Env();
    ggml_tensor *t = Allocated(info[0]);
    int64_t first = info[1].As<Napi::Number>().Int64Value(), count = info[2].As<Napi::Number>().Int64Value();
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) throw Napi::Error::New(env, std::string("tensorRead: needs a contiguous F32 tensor: ") + t->name);
    if (first < 0 || count < 0 || first + count > ggml_nelements(t)) throw Napi::RangeError::New(env, std::string("tensorRead: range outside ") + t->name);
    Napi::Float32Array out = Napi::Float32Array::New(env, count);
    ggml_backend_tensor_get(t, out.Data(), first * 4, count * 4);
    return out;
}

Napi::Value TensorCopy(const Napi::CallbackInfo &info) {
    // tensorCopy(src, dst): src's bytes into dst (same type and shape; any buffers, any devices)
    ggml_tensor *src = Allocated(info[0]), *dst = Allocated(info[1]);
    if (ggml_nbytes(src) != ggml_nbytes(dst) || src->type != dst->type) throw Napi::Error::New(info.Env(), std::string("tensorCopy: ") + src->name + " and " + dst->name + " differ in type or size");
    ggml_backend_tensor_copy(src, dst);
    return info.Env().Undefined();
}

Napi::Value TensorLoadFile(const Napi::CallbackInfo &info) {
    // tensorLoadFile(t, path, fileOffset): reads ggml_nbytes(t) bytes at fileOffset into t, in chunks.
    Napi::Env env = info.Env();
    ggml_tensor *t = Allocated(info[0]);
    std::string path = info[1].As<Napi::String>();
    int64_t off = info[2].As<Napi::Number>().Int64Value();
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Napi::Error::New(env, path + ": cannot open (" + strerror(errno) + ")");
    size_t total = ggml_nbytes(t), done = 0;
    const size_t chunk = 16u << 20;
    std::vector<uint8_t> buf(std::min(total, chunk));
    while (done < total) {
        size_t want = std::min(chunk, total - done);
        ssize_t got = pread(fd, buf.data(), want, off + (off_t)done);
        if (got <= 0) {
            close(fd);
            throw Napi::Error::New(env, path + ": tensor " + t->name + " is cut short (file ends inside its data)");
        }
        ggml_backend_tensor_set(t, buf.data(), done, (size_t)got);
        done += (size_t)got;
    }
    close(fd);
    return env.Undefined();
}

// ---------------------------------------------------------------------------------------------
// Graph: built once from output tensors, allocated once by a scheduler, computed many times

class Graph : public Napi::ObjectWrap<Graph> {
  public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "Graph",
                           {
                               InstanceMethod("compute", &Graph::Compute),
                               InstanceMethod("computeAsync", &Graph::ComputeAsync),
                               InstanceMethod("profile", &Graph::Profile),
                               InstanceMethod("grad", &Graph::Grad),
                               InstanceMethod("nodeCount", &Graph::NodeCount),
                               InstanceMethod("computeBytes", &Graph::ComputeBytes),
                               InstanceMethod("splits", &Graph::Splits),
                               InstanceMethod("free", &Graph::Free),
                           });
    }
    // new Graph(backend, ctx, outputs[], { backward: bool, maxNodes, exact: bool })
    explicit Graph(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Graph>(info) {
        Napi::Env env = info.Env();
        backend_ = Napi::ObjectWrap<Backend>::Unwrap(info[0].As<Napi::Object>());
        backend_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
        Context *c = Napi::ObjectWrap<Context>::Unwrap(info[1].As<Napi::Object>());
        ctx_ref_ = Napi::Persistent(info[1].As<Napi::Object>());
        Napi::Array outs = info[2].As<Napi::Array>();
        Napi::Object opts = info[3].As<Napi::Object>();
        bool backward = opts.Get("backward").ToBoolean();
        size_t max_nodes = opts.Has("maxNodes") ? opts.Get("maxNodes").As<Napi::Number>().Int64Value() : 32768;

        graph_ = ggml_new_graph_custom(c->ctx(), max_nodes, backward);
        for (uint32_t i = 0; i < outs.Length(); i++) {
            ggml_tensor *o = T(outs.Get(i));
            ggml_set_output(o);
            ggml_build_forward_expand(graph_, o);
        }
        if (backward) {
            ggml_set_loss(T(outs.Get(0u)));
            ggml_build_backward_expand(c->ctx(), graph_, nullptr);
            // keep every parameter's gradient readable after compute (the allocator would reuse it)
            for (int i = 0; i < ggml_graph_n_nodes(graph_); i++) {
                ggml_tensor *node = ggml_graph_node(graph_, i);
                if (!(node->flags & GGML_TENSOR_FLAG_PARAM)) continue;
                ggml_tensor *g = ggml_graph_get_grad(graph_, node);
                if (g) ggml_set_output(g);
            }
            backward_ = true;
        }

        if (!backend_->alive()) throw Napi::Error::New(env, "the engine was closed");
        if ((size_t)ggml_graph_n_nodes(graph_) * 2 > Backend::kGraphSize) throw Napi::Error::New(env, "graph too large for one scheduler (" + std::to_string(ggml_graph_n_nodes(graph_)) + " nodes)");
        std::vector<ggml_backend_t> backends = {backend_->main()};
        if (!backend_->is_cpu()) backends.push_back(backend_->cpu());
        // ggml aborts the process when no backend can run a node; say which node instead
        for (int i = 0; i < ggml_graph_n_nodes(graph_); i++) {
            ggml_tensor *node = ggml_graph_node(graph_, i);
            bool ok = false;
            for (auto be : backends) ok = ok || ggml_backend_supports_op(be, node);
            if (!ok) {
                std::string types;
                for (int j = 0; j < GGML_MAX_SRC && node->src[j]; j++) types += std::string(j ? ", " : "") + ggml_type_name(node->src[j]->type) + " " + node->src[j]->name;
                throw Napi::Error::New(env, std::string("the ") + ggml_backend_name(backends.back()) + " backend cannot run " + ggml_op_desc(node) + " on (" + types + ")" +
                                                (backward ? "; training through this weight type is not supported, convert the model to F16, Q8_0 or another type" : ""));
            }
        }
        size_t before = backend_->sched_bytes();
        sched_ = backend_->take_sched(graph_, &shape_, opts.Has("exact") && opts.Get("exact").ToBoolean());
        backend_->note_sched(sched_);
        if (!ggml_backend_sched_alloc_graph(sched_, graph_)) {
            backend_->give_sched(sched_, shape_);
            sched_ = nullptr;
            throw Napi::Error::New(env, "out of memory allocating the compute graph on " + std::string(ggml_backend_name(backend_->main())));
        }
        for (int i = 0; i < ggml_backend_sched_get_n_backends(sched_); i++) {
            compute_bytes_ += ggml_backend_sched_get_buffer_size(sched_, ggml_backend_sched_get_backend(sched_, i));
        }
        size_t after = backend_->sched_bytes();
        if (after > before) backend_->account(after - before, true);
    }
    ~Graph() override { Release(); }

  private:
    Backend *backend_ = nullptr;
    Napi::ObjectReference backend_ref_, ctx_ref_;
    ggml_cgraph *graph_ = nullptr;
    ggml_backend_sched_t sched_ = nullptr;
    uint64_t shape_ = 0;
    size_t compute_bytes_ = 0;
    bool backward_ = false;

    void Release() {
        if (sched_ && backend_->alive()) backend_->give_sched(sched_, shape_);
        sched_ = nullptr;
    }
    Napi::Value Free(const Napi::CallbackInfo &info) { Release(); return info.Env().Undefined(); }

    Napi::Value Compute(const Napi::CallbackInfo &info) {
        if (!sched_ || !backend_->alive()) throw Napi::Error::New(info.Env(), "graph was freed or its engine closed");
        if (backward_) ggml_graph_reset(graph_);  // gradients to zero, the loss's to 1
        ggml_status st = ggml_backend_sched_graph_compute(sched_, graph_);
        if (st != GGML_STATUS_SUCCESS) throw Napi::Error::New(info.Env(), "graph compute failed with status " + std::to_string((int)st));
        return info.Env().Undefined();
    }

    // computeAsync() -> Promise: the same compute on a libuv worker thread, so JavaScript (and graphs
    // of another engine) go on meanwhile. The caller keeps the graph, its engine and its tensors
    // untouched until the promise settles; two graphs of one engine never compute at once.
    class ComputeWork : public Napi::AsyncWorker {
      public:
        ComputeWork(Napi::Env env, Graph *g) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), g_(g) {}
        Napi::Promise Promise() { return deferred_.Promise(); }
      protected:
        void Execute() override {
            if (g_->backward_) ggml_graph_reset(g_->graph_);
            ggml_status st = ggml_backend_sched_graph_compute(g_->sched_, g_->graph_);
            if (st != GGML_STATUS_SUCCESS) SetError("graph compute failed with status " + std::to_string((int)st));
        }
        void OnOK() override { deferred_.Resolve(Env().Undefined()); }
        void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }
      private:
        Napi::Promise::Deferred deferred_;
        Graph *g_;
    };
    Napi::Value ComputeAsync(const Napi::CallbackInfo &info) {
        if (!sched_ || !backend_->alive()) throw Napi::Error::New(info.Env(), "graph was freed or its engine closed");
        auto *w = new ComputeWork(info.Env(), this);
        w->Queue();
        return w->Promise();
    }

    // profile() -> [[op, name, microseconds, operands], ...]: one compute with every node run on its
    // own (the scheduler's eval callback asks for each), timed between the ask and the answer
    struct ProfileRows {
        std::vector<std::tuple<std::string, std::string, double, std::string>> rows;
        std::chrono::steady_clock::time_point t0;
    };
    static bool ProfileNode(ggml_tensor *t, bool ask, void *user) {
        auto *p = static_cast<ProfileRows *>(user);
        if (ask) { p->t0 = std::chrono::steady_clock::now(); return true; }
        double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - p->t0).count();
        std::string operands;
        for (int j = 0; j < GGML_MAX_SRC && t->src[j]; j++) {
            ggml_tensor *s = t->src[j];
            operands += std::string(j ? " x " : "") + ggml_type_name(s->type) + "[" + std::to_string(s->ne[0]) + "," + std::to_string(s->ne[1]) + "," + std::to_string(s->ne[2]) + "]";
        }
        p->rows.emplace_back(ggml_op_desc(t), t->name, us, operands);
        return true;
    }
    Napi::Value Profile(const Napi::CallbackInfo &info) {
        Napi::Env env = info.Env();
        if (!sched_ || !backend_->alive()) throw Napi::Error::New(env, "graph was freed or its engine closed");
        if (backward_) ggml_graph_reset(graph_);
        ProfileRows p;
        ggml_backend_sched_set_eval_callback(sched_, ProfileNode, &p);
        ggml_status st = ggml_backend_sched_graph_compute(sched_, graph_);
        ggml_backend_sched_set_eval_callback(sched_, nullptr, nullptr);
        if (st != GGML_STATUS_SUCCESS) throw Napi::Error::New(env, "graph compute failed with status " + std::to_string((int)st));
        Napi::Array out = Napi::Array::New(env, p.rows.size());
        for (size_t i = 0; i < p.rows.size(); i++) {
            Napi::Array r = Napi::Array::New(env, 4);
            r.Set(0u, std::get<0>(p.rows[i]));
            r.Set(1u, std::get<1>(p.rows[i]));
            r.Set(2u, std::get<2>(p.rows[i]));
            r.Set(3u, std::get<3>(p.rows[i]));
            out.Set(i, r);
        }
        return out;
    }

    Napi::Value Grad(const Napi::CallbackInfo &info) {
        ggml_tensor *g = ggml_graph_get_grad(graph_, T(info[0]));
        if (!g) return info.Env().Null();
        return Wrap(info.Env(), g);
    }

    Napi::Value NodeCount(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), ggml_graph_n_nodes(graph_)); }
    Napi::Value ComputeBytes(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), (double)compute_bytes_); }
    Napi::Value Splits(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), ggml_backend_sched_get_n_splits(sched_)); }
};

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
    hone::InitIo(env, exports);
    hone::InitCompress(env, exports);
    ggml_log_set(log_callback, nullptr);
    ggml_set_abort_callback(abort_callback);
    exports.Set("loadBackends", Napi::Function::New(env, LoadBackends));
    exports.Set("devices", Napi::Function::New(env, Devices));
    exports.Set("setVerbose", Napi::Function::New(env, SetVerbose));
    exports.Set("typeInfo", Napi::Function::New(env, TypeInfo));
    exports.Set("quantize", Napi::Function::New(env, Quantize));
    exports.Set("randomTensor", Napi::Function::New(env, RandomTensor));
    exports.Set("int8Supported", Napi::Function::New(env, Int8Supported));
    exports.Set("packQ8", Napi::Function::New(env, PackQ8));
    exports.Set("attnSumSupported", Napi::Function::New(env, AttnSumSupported));
    exports.Set("dequantize", Napi::Function::New(env, Dequantize));
    exports.Set("tensorInfo", Napi::Function::New(env, TensorInfo));
    exports.Set("setName", Napi::Function::New(env, SetName));
    exports.Set("markOutput", Napi::Function::New(env, MarkOutput));
    exports.Set("tensorSet", Napi::Function::New(env, TensorSet));
    exports.Set("tensorHasMemory", Napi::Function::New(env, TensorHasMemory));
    exports.Set("tensorGet", Napi::Function::New(env, TensorGet));
    exports.Set("tensorLoadFile", Napi::Function::New(env, TensorLoadFile));
    exports.Set("tensorCopy", Napi::Function::New(env, TensorCopy));
    exports.Set("tensorRead", Napi::Function::New(env, TensorRead));
    exports.Set("Context", Context::Init(env));
    exports.Set("Backend", Backend::Init(env));
    exports.Set("Graph", Graph::Init(env));
    return exports;
}

}  // namespace

NODE_API_MODULE(hone, InitAll)
