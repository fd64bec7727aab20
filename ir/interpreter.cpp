// Reference interpreter: every IR op in plain fp32 on the CPU.
//
// Numerics (documented because kernels are compared against them):
// - matmul / attention dot products: fp32, 8 interleaved partial sums over K
//   (k mod 8), combined pairwise in a fixed order (see dot()). Deterministic
//   and independent of blocking and of the thread split.
// - rms_norm: sum of squares accumulated in double (a closer oracle for GPU
//   tree reductions than sequential fp32), scale computed in double, output
//   rounded to fp32.
// - rope: angles and their cos/sin in double, theta_i = pos * base^(-2i/n_rot)
//   / freq_factor[i]; rotation applied in fp32.
// - softmax: fp32 with max subtraction; exp via std::exp on float.
// - geglu: gelu_tanh in fp32 with std::tanh on float (gelu_tanh() below).
// - attention with a window reads its keys in position order (rows j mod C),
//   so a ring cache and a full cache give bit-identical results.
// - kv_store / rope_store: rows stored into an f16 / bf16 cache are rounded to
//   that dtype (nearest even), as the GPU stores them; states stay f32 storage.
// - rms_matmul_rope_store is rope_store of its rms_matmul product, computed
//   by the code of those two ops (bit-identical to the pair).
// - x_q8 = 1 on a matmul-family node: activation rows are replaced by their
//   16-value q8 round trip (ir/quantize.h) before the product; with a rms
//   prologue the quantised value is x * gain and 1/rms scales the product.
// Weights are dequantised to fp32 once, on first use, row by row via
// ir::dequantize, and cached for the interpreter's lifetime.
#include "ir/interpreter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "ir/dequant.h"
#include "ir/quantize.h"

namespace kiln::ir {

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor Tensor::zeros_f32(std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.f32.assign(static_cast<size_t>(t.numel()), 0.0f);
  return t;
}

Tensor Tensor::from_i32(std::vector<int32_t> v) {
  Tensor t;
  t.dtype = DType::I32;
  t.shape = {static_cast<int64_t>(v.size())};
  t.i32 = std::move(v);
  return t;
}

namespace {

using TensorPtr = std::shared_ptr<Tensor>;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Fixed-order fp32 dot product: 8 lanes (lane j sums k = j mod 8, in
// increasing k), then the lanes are combined as ((l0+l4)+(l2+l6)) +
// ((l1+l5)+(l3+l7)). Every path below (scalar, 2x2 micro-kernel) produces
// exactly this order, so results do not depend on blocking or threading.
typedef float v4f __attribute__((vector_size(16)));

inline v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline float combine(v4f lo, v4f hi, const float* tail_x, const float* tail_w, int64_t tail) {
  float acc[8];
  std::memcpy(acc, &lo, 16);
  std::memcpy(acc + 4, &hi, 16);
  for (int64_t j = 0; j < tail; ++j) acc[j] += tail_x[j] * tail_w[j];
  float s0 = acc[0] + acc[4], s1 = acc[1] + acc[5], s2 = acc[2] + acc[6], s3 = acc[3] + acc[7];
  return (s0 + s2) + (s1 + s3);
}

inline float dot(const float* a, const float* b, int64_t n) {
  v4f lo = {0, 0, 0, 0}, hi = {0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    lo += load4(a + k) * load4(b + k);
    hi += load4(a + k + 4) * load4(b + k + 4);
  }
  return combine(lo, hi, a + k, b + k, n - k);
}

// Four dots at once: rows x0, x1 against rows w0, w1 (each x/w load reused twice).
inline void dot2x2(const float* x0, const float* x1, const float* w0, const float* w1, int64_t n, float* r00,
                   float* r01, float* r10, float* r11) {
  v4f a00 = {0, 0, 0, 0}, b00 = a00, a01 = a00, b01 = a00, a10 = a00, b10 = a00, a11 = a00, b11 = a00;
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    v4f xa = load4(x0 + k), xb = load4(x0 + k + 4), ya = load4(x1 + k), yb = load4(x1 + k + 4);
    v4f wa = load4(w0 + k), wb = load4(w0 + k + 4);
    a00 += xa * wa;
    b00 += xb * wb;
    a10 += ya * wa;
    b10 += yb * wb;
    wa = load4(w1 + k);
    wb = load4(w1 + k + 4);
    a01 += xa * wa;
    b01 += xb * wb;
    a11 += ya * wa;
    b11 += yb * wb;
  }
  int64_t tail = n - k;
  *r00 = combine(a00, b00, x0 + k, w0 + k, tail);
  *r01 = combine(a01, b01, x0 + k, w1 + k, tail);
  *r10 = combine(a10, b10, x1 + k, w0 + k, tail);
  *r11 = combine(a11, b11, x1 + k, w1 + k, tail);
}

// out[T,N] = x[T,K] @ w[N,K]^T, two threads over output columns.
void matmul(const float* x, const float* w, float* out, int64_t T, int64_t K, int64_t N) {
  auto work = [&](int64_t n0, int64_t n1) {
    constexpr int64_t NB = 16;  // w rows per block, reused across all x rows from cache
    for (int64_t nb = n0; nb < n1; nb += NB) {
      int64_t ne = std::min(n1, nb + NB);
      int64_t t = 0;
      for (; t + 2 <= T; t += 2) {
        const float *x0 = x + t * K, *x1 = x0 + K;
        int64_t n = nb;
        for (; n + 2 <= ne; n += 2)
          dot2x2(x0, x1, w + n * K, w + (n + 1) * K, K, &out[t * N + n], &out[t * N + n + 1],
                 &out[(t + 1) * N + n], &out[(t + 1) * N + n + 1]);
        for (; n < ne; ++n) {
          out[t * N + n] = dot(x0, w + n * K, K);
          out[(t + 1) * N + n] = dot(x1, w + n * K, K);
        }
      }
      for (; t < T; ++t)
        for (int64_t n = nb; n < ne; ++n) out[t * N + n] = dot(x + t * K, w + n * K, K);
    }
  };
  if (T * N * K < (int64_t{1} << 18) || N < 2) {
    work(0, N);
    return;
  }
  int64_t half = N / 2;
  std::thread th([&] { work(half, N); });
  work(0, half);
  th.join();
}

// A KV-cache row store (kv_store, rope_store): the row rounded to the cache's
// dtype (f16 / bf16: round to nearest even, as the kernels' stores), kept in
// f32 storage, so attention reads exactly what the GPU's cache holds.
void store_row(float* dst, const float* src, int64_t n, DType cache_t) {
  for (int64_t i = 0; i < n; ++i) dst[i] = round_to_dtype(cache_t, src[i]);
}

// GELU, tanh approximation (Hendrycks & Gimpel 2016, eq. for "gelu_pytorch_tanh"), in fp32.
inline float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f, kCoef = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

// rms_norm of each row, exactly as the rms_norm op computes it (fused ops reuse it).
// 1 / rms of one row: sum of squares in double, rounded to f32 at the end.
float row_inv_rms(const float* xr, int64_t H, double eps) {
  double ss = 0;
  for (int64_t h = 0; h < H; ++h) ss += static_cast<double>(xr[h]) * xr[h];
  return static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(H) + eps));
}

Tensor rms_norm_rows(const Tensor& x, const Tensor& w, double eps) {
  int64_t T = x.shape[0], H = x.shape[1];
  Tensor out = Tensor::zeros_f32(x.shape);
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x.f32.data() + t * H;
    const float r = row_inv_rms(xr, H, eps);
    for (int64_t h = 0; h < H; ++h) out.f32[static_cast<size_t>(t * H + h)] = xr[h] * r * w.f32[static_cast<size_t>(h)];
  }
  return out;
}

// x_q8 = 1 on a matmul-family node: its activation rows pass through the
// 16-value q8 quantiser (ir/quantize.h) before the product, as the decode
// GEMV's integer dot products see them.
bool x_q8(const Node& n) { return n.attrs.count("x_q8") && n.attr_int("x_q8") == 1; }
void act_q8_rows(Tensor& x) { act_q8_roundtrip(x.f32.data(), static_cast<int64_t>(x.f32.size())); }

// rms_matmul's activation: with x_q8 the kernel quantises x * gain (the
// per-row 1/rms is a scalar applied to the finished dot products), so h is
// q8(x * gain) and `inv` receives the per-row scalars; otherwise h is
// rms_norm(x, gain) and inv stays empty.
Tensor rms_activation(const Node& n, const Tensor& x, const Tensor& gain, std::vector<float>& inv) {
  if (!x_q8(n)) return rms_norm_rows(x, gain, n.attr_float("eps"));
  const int64_t T = x.shape[0], H = x.shape[1];
  const double eps = n.attr_float("eps");
  Tensor h = Tensor::zeros_f32(x.shape);
  inv.assign(static_cast<size_t>(T), 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x.f32.data() + t * H;
    inv[static_cast<size_t>(t)] = row_inv_rms(xr, H, eps);
    for (int64_t i = 0; i < H; ++i) h.f32[static_cast<size_t>(t * H + i)] = xr[i] * gain.f32[static_cast<size_t>(i)];
  }
  act_q8_rows(h);
  return h;
}
void scale_rows(Tensor& y, const std::vector<float>& inv) {
  if (inv.empty()) return;
  const int64_t N = y.shape[1];
  for (size_t i = 0; i < y.f32.size(); ++i) y.f32[i] *= inv[i / static_cast<size_t>(N)];
}

// rms_matmul: the rms activation of x (rms_activation) times each weight, the
// weights' output columns side by side (one weight: its product). Every op
// with this prologue computes its product here (rms_matmul, rms_matmul_swiglu,
// rms_matmul_rope_store), so they agree bit for bit.
Tensor rms_matmul(const Node& n, const Tensor& x, const Tensor& gain, const std::vector<const Tensor*>& ws) {
  std::vector<float> inv;
  Tensor h = rms_activation(n, x, gain, inv);
  const int64_t T = x.shape[0], K = x.shape[1];
  if (ws.size() == 1) {
    const int64_t N = ws[0]->shape[0];
    Tensor mm = Tensor::zeros_f32({T, N});
    matmul(h.f32.data(), ws[0]->f32.data(), mm.f32.data(), T, K, N);
    scale_rows(mm, inv);
    return mm;
  }
  int64_t cols = 0;  // several weights: each one's columns, side by side
  for (const Tensor* w : ws) cols += w->shape[0];
  Tensor out = Tensor::zeros_f32({T, cols});
  int64_t c0 = 0;
  for (const Tensor* w : ws) {
    const int64_t Ni = w->shape[0];
    Tensor part = Tensor::zeros_f32({T, Ni});
    matmul(h.f32.data(), w->f32.data(), part.f32.data(), T, K, Ni);
    scale_rows(part, inv);
    for (int64_t t = 0; t < T; ++t) std::copy_n(part.f32.data() + t * Ni, Ni, out.f32.data() + t * cols + c0);
    c0 += Ni;
  }
  return out;
}

// Rope angles and rotation, exactly as the rope op computes them (used by rope_store).
void rope_angles(double p, int64_t n_rot, double base, const Tensor* ff, std::vector<double>& cs,
                 std::vector<double>& sn) {
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    double a = p * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    if (ff) a /= ff->f32[static_cast<size_t>(i)];
    cs[static_cast<size_t>(i)] = std::cos(a);
    sn[static_cast<size_t>(i)] = std::sin(a);
  }
}
void rope_heads(const float* x, float* o, int64_t nh, int64_t hd, int64_t n_rot, bool neox,
                const std::vector<double>& cs, const std::vector<double>& sn) {
  std::memcpy(o, x, sizeof(float) * static_cast<size_t>(nh * hd));
  for (int64_t h = 0; h < nh; ++h) {
    const float* xr = x + h * hd;
    float* oh = o + h * hd;
    for (int64_t i = 0; i < n_rot / 2; ++i) {
      int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
      float c = static_cast<float>(cs[static_cast<size_t>(i)]), s = static_cast<float>(sn[static_cast<size_t>(i)]);
      float x0 = xr[i0], x1 = xr[i1];
      oh[i0] = x0 * c - x1 * s;
      oh[i1] = x0 * s + x1 * c;
    }
  }
}

}  // namespace

struct Interpreter::Impl {
  Graph g;
  WeightSource weights;
  std::vector<TensorPtr> states;         // by value id (null for non-states)
  std::vector<TensorPtr> weight_cache;   // by value id, fp32, filled on first use
  // shared with other interpreters (share_weights): fp32 weights by source key
  struct SourceCache {
    std::mutex mu;
    std::map<std::string, TensorPtr> by_key;
  };
  std::shared_ptr<SourceCache> shared;
  std::vector<TensorPtr> last;           // values of the last run, by id
  std::map<std::string, int64_t> sym_values;

  [[noreturn]] void fail_node(size_t ni, const std::string& msg, ErrorCode code = ErrorCode::kInvalidArgument) const {
    const Node& n = g.nodes()[ni];
    throw Error(code,
                "interpreter: node " + std::to_string(ni) + " (" + std::string(op_info(n.op).name) + " -> %" +
                    g.value(n.outputs[0]).name + "): " + msg,
                g.value(n.outputs[0]).name);
  }

  std::vector<int64_t> resolve(const Shape& s) const {
    std::vector<int64_t> out;
    for (const Dim& d : s) {
      if (d.is_static()) {
        out.push_back(d.value);
      } else {
        auto it = sym_values.find(d.sym);
        out.push_back(it != sym_values.end() ? it->second : d.value);
      }
    }
    return out;
  }

  void reset_states() {
    states.assign(g.values().size(), nullptr);
    for (const Value& v : g.values()) {
      if (v.kind != ValueKind::State) continue;
      std::vector<int64_t> shape;
      for (const Dim& d : v.shape) shape.push_back(d.value);  // sized by the bound
      states[static_cast<size_t>(v.id)] = std::make_shared<Tensor>(Tensor::zeros_f32(shape));
    }
  }

  WeightData fetch(const Value& v) {
    WeightData wd = weights(v.source);
    std::vector<int64_t> want;
    for (const Dim& d : v.shape) want.push_back(d.value);
    if (wd.dtype != v.dtype)
      throw Error(ErrorCode::kInvalidArgument,
                  "weight %" + v.name + " ('" + v.source + "') is " + std::string(dtype_name(wd.dtype)) +
                      " but the graph says " + std::string(dtype_name(v.dtype)),
                  v.source);
    if (wd.shape != want)
      throw Error(ErrorCode::kInvalidArgument,
                  "weight %" + v.name + " ('" + v.source + "') has shape " + shape_str(wd.shape) +
                      " but the graph says " + shape_str(want),
                  v.source);
    int64_t K = want.empty() ? 1 : want.back();
    int64_t rows = K == 0 ? 0 : Tensor{DType::F32, want, {}, {}}.numel() / K;
    uint64_t need = row_bytes(v.dtype, K) * static_cast<uint64_t>(rows);
    if (wd.nbytes < need || (need > 0 && wd.data == nullptr))
      throw Error(ErrorCode::kInvalidArgument,
                  "weight %" + v.name + " ('" + v.source + "') has " + std::to_string(wd.nbytes) + " bytes, needs " +
                      std::to_string(need),
                  v.source);
    return wd;
  }

  const Tensor& weight(ValueId id) {
    auto& slot = weight_cache[static_cast<size_t>(id)];
    if (slot) return *slot;
    const Value& v = g.value(id);
    std::string key;
    if (shared) {
      key = v.source + "|" + std::string(dtype_name(v.dtype));
      for (const Dim& d : v.shape) key += "|" + std::to_string(d.value);
      std::lock_guard<std::mutex> lock(shared->mu);
      if (auto it = shared->by_key.find(key); it != shared->by_key.end()) return *(slot = it->second);
    }
    WeightData wd = fetch(v);
    auto t = std::make_shared<Tensor>(Tensor::zeros_f32(wd.shape));
    int64_t K = wd.shape.empty() ? 1 : wd.shape.back();
    int64_t rows = K == 0 ? 0 : t->numel() / K;
    uint64_t rb = row_bytes(v.dtype, K);
    for (int64_t r = 0; r < rows; ++r)
      dequantize(v.dtype, wd.data + rb * static_cast<uint64_t>(r), t->f32.data() + r * K, K);
    slot = t;
    if (shared) {
      std::lock_guard<std::mutex> lock(shared->mu);
      shared->by_key.emplace(key, t);
    }
    return *slot;
  }

  // The fp32 contents of a value: weights from the cache, others as computed.
  const Tensor& get(const std::vector<TensorPtr>& vals, ValueId id) {
    if (g.value(id).kind == ValueKind::Weight) return weight(id);
    return *vals[static_cast<size_t>(id)];
  }

  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs);
  TensorPtr eval(size_t ni, std::vector<TensorPtr>& vals);
  TensorPtr rope_store(size_t ni, std::vector<TensorPtr>& vals, const Tensor& qkv, const Tensor* ff);
};

std::map<std::string, Tensor> Interpreter::Impl::run(const std::map<std::string, Tensor>& inputs) {
  std::vector<TensorPtr> vals(g.values().size());
  sym_values.clear();
  // Bind inputs and resolve symbolic dims from their shapes.
  for (const auto& [name, t] : inputs) {
    auto id = g.find_value(name);
    if (!id || g.value(*id).kind != ValueKind::Input)
      throw Error(ErrorCode::kInvalidArgument, "interpreter: '" + name + "' is not an input of the graph", name);
  }
  for (const Value& v : g.values()) {
    if (v.kind != ValueKind::Input) continue;
    auto it = inputs.find(v.name);
    if (it == inputs.end())
      throw Error(ErrorCode::kInvalidArgument, "interpreter: input '" + v.name + "' was not given", v.name);
    const Tensor& t = it->second;
    bool want_i32 = v.dtype == DType::I32;
    if (t.dtype != (want_i32 ? DType::I32 : DType::F32))
      throw Error(ErrorCode::kInvalidArgument,
                  "interpreter: input '" + v.name + "' must be " + std::string(want_i32 ? "i32" : "f32"), v.name);
    if (t.shape.size() != v.shape.size())
      throw Error(ErrorCode::kInvalidArgument,
                  "interpreter: input '" + v.name + "' has rank " + std::to_string(t.shape.size()) + ", expected " +
                      std::to_string(v.shape.size()),
                  v.name);
    size_t have = want_i32 ? t.i32.size() : t.f32.size();
    if (static_cast<int64_t>(have) != t.numel())
      throw Error(ErrorCode::kInvalidArgument,
                  "interpreter: input '" + v.name + "' holds " + std::to_string(have) + " elements but its shape " +
                      shape_str(t.shape) + " needs " + std::to_string(t.numel()),
                  v.name);
    for (size_t i = 0; i < v.shape.size(); ++i) {
      const Dim& d = v.shape[i];
      int64_t n = t.shape[i];
      if (d.is_static()) {
        if (n != d.value)
          throw Error(ErrorCode::kInvalidArgument,
                      "interpreter: input '" + v.name + "' dim " + std::to_string(i) + " is " + std::to_string(n) +
                          ", expected " + std::to_string(d.value),
                      v.name);
        continue;
      }
      if (n < 1 || n > d.value)
        throw Error(ErrorCode::kInvalidArgument,
                    "interpreter: input '" + v.name + "' dim " + std::to_string(i) + " ('" + d.sym + "') is " +
                        std::to_string(n) + ", must be in 1.." + std::to_string(d.value),
                    v.name);
      auto [s, inserted] = sym_values.emplace(d.sym, n);
      if (!inserted && s->second != n)
        throw Error(ErrorCode::kInvalidArgument,
                    "interpreter: symbolic dim '" + d.sym + "' is " + std::to_string(s->second) +
                        " in one input and " + std::to_string(n) + " in '" + v.name + "'",
                    v.name);
    }
    vals[static_cast<size_t>(v.id)] = std::make_shared<Tensor>(t);
  }
  for (const Value& v : g.values())
    if (v.kind == ValueKind::State) vals[static_cast<size_t>(v.id)] = states[static_cast<size_t>(v.id)];

  for (size_t ni = 0; ni < g.nodes().size(); ++ni) {
    const Node& n = g.nodes()[ni];
    TensorPtr out = eval(ni, vals);
    const Value& ov = g.value(n.outputs[0]);
    if ((ov.dtype == DType::F16 || ov.dtype == DType::BF16) &&
        (n.op == OpKind::RmsNorm || n.op == OpKind::SwiGlu || n.op == OpKind::GeGlu || n.op == OpKind::Attention)) {
      // an activation written in half precision (fold-cast): rounded as a cast
      // rounds it; values stay in f32 storage. eval made `out` for this node.
      for (float& v : out->f32) v = round_to_dtype(ov.dtype, v);
    }
    std::vector<int64_t> want = resolve(ov.shape);
    if (out->shape != want)
      fail_node(ni, "computed shape " + shape_str(out->shape) + " but the graph declares " + shape_str(want),
                ErrorCode::kInternal);
    vals[static_cast<size_t>(ov.id)] = std::move(out);
    for (size_t oi = 1; oi < n.outputs.size(); ++oi) {  // multi-output (fused) ops set the others in eval
      const Value& extra = g.value(n.outputs[oi]);
      const TensorPtr& t = vals[static_cast<size_t>(extra.id)];
      if (!t) fail_node(ni, "output %" + extra.name + " was not computed", ErrorCode::kInternal);
      std::vector<int64_t> want_extra = resolve(extra.shape);
      if (t->shape != want_extra)
        fail_node(ni, "computed shape " + shape_str(t->shape) + " for %" + extra.name + " but the graph declares " +
                          shape_str(want_extra),
                  ErrorCode::kInternal);
    }
    for (size_t oi = 0; oi < n.outputs.size(); ++oi) {  // in-place outputs (op table) share the state's tensor
      const ValueId a = aliased_input(n, oi);
      if (a != kNoValue && vals[static_cast<size_t>(n.outputs[oi])] != vals[static_cast<size_t>(a)])
        fail_node(ni, "output %" + g.value(n.outputs[oi]).name + " must be %" + g.value(a).name +
                          " updated in place (OpInfo::output_alias)",
                  ErrorCode::kInternal);
    }
  }
  std::map<std::string, Tensor> result;
  for (ValueId o : g.outputs()) result[g.value(o).name] = get(vals, o);
  last = std::move(vals);
  return result;
}

// rope_store of a computed qkv [T, (nh + 2 nkv) hd] for node ni (rope_store,
// or rms_matmul_rope_store on its rms_matmul product): pos, kc, vc are the
// node's inputs 1, 2, 3 in both ops, as are its attrs and outputs q, kc', vc'.
TensorPtr Interpreter::Impl::rope_store(size_t ni, std::vector<TensorPtr>& vals, const Tensor& qkv, const Tensor* ff) {
  const Node& n = g.nodes()[ni];
  const Tensor& pos = get(vals, n.inputs[1]);
  TensorPtr kc = vals[static_cast<size_t>(n.inputs[2])], vc = vals[static_cast<size_t>(n.inputs[3])];
  int64_t nh = n.attr_int("n_heads"), nkv = n.attr_int("n_kv_heads"), hd = n.attr_int("head_dim");
  int64_t n_rot = n.attr_int("n_rot");
  double base = n.attr_float("theta");
  bool neox = n.attr_str("mode") == "neox";
  int64_t T = qkv.shape[0], W = qkv.shape[1], Wq = nh * hd, Wk = nkv * hd, C = kc->shape[0];
  // qk_norm_eps: every q and k head is rms_norm'd (per head, gains gq / gk) first, as
  // rms_norm {head_dim} computes it; ring: position p goes to cache row p mod C
  const bool qn = n.attrs.count("qk_norm_eps") != 0;
  const double qeps = qn ? n.attr_float("qk_norm_eps") : 0.0;
  const float* gains[2] = {qn ? get(vals, n.inputs[4]).f32.data() : nullptr,
                           qn ? get(vals, n.inputs[5]).f32.data() : nullptr};
  const bool ring = n.attrs.count("ring") && n.attr_int("ring") != 0;
  auto q = std::make_shared<Tensor>(Tensor::zeros_f32({T, Wq}));
  std::vector<float> krow(static_cast<size_t>(Wk)), normed(qn ? static_cast<size_t>(Wq + Wk) : 0);
  std::vector<double> cs(static_cast<size_t>(n_rot / 2)), sn(static_cast<size_t>(n_rot / 2));
  for (int64_t t = 0; t < T; ++t) {
    int32_t p = pos.i32[static_cast<size_t>(t)];
    if (p < 0 || (p >= C && !ring))
      fail_node(ni, "position " + std::to_string(p) + " is outside the KV cache (0.." + std::to_string(C - 1) +
                        "); the context is full");
    rope_angles(p, n_rot, base, ff, cs, sn);
    const float* row = qkv.f32.data() + t * W;
    const float* qk = row;
    if (qn) {
      for (int64_t h = 0; h < nh + nkv; ++h) {
        const float* xr = row + h * hd;
        const float* gw = gains[h < nh ? 0 : 1];
        const float r = row_inv_rms(xr, hd, qeps);
        for (int64_t i = 0; i < hd; ++i) normed[static_cast<size_t>(h * hd + i)] = xr[i] * r * gw[i];
      }
      qk = normed.data();
    }
    rope_heads(qk, q->f32.data() + t * Wq, nh, hd, n_rot, neox, cs, sn);
    rope_heads(qk + Wq, krow.data(), nkv, hd, n_rot, neox, cs, sn);
    const int64_t r = p % C;
    store_row(kc->f32.data() + r * Wk, krow.data(), Wk, g.value(n.inputs[2]).dtype);
    store_row(vc->f32.data() + r * Wk, row + Wq + Wk, Wk, g.value(n.inputs[3]).dtype);
  }
  vals[static_cast<size_t>(n.outputs[1])] = kc;  // aliases input 2
  vals[static_cast<size_t>(n.outputs[2])] = vc;  // aliases input 3
  return q;
}

TensorPtr Interpreter::Impl::eval(size_t ni, std::vector<TensorPtr>& vals) {
  const Node& n = g.nodes()[ni];
  auto in = [&](size_t i) -> const Tensor& { return get(vals, n.inputs[i]); };
  switch (n.op) {
    case OpKind::Embed: {
      const Value& tv = g.value(n.inputs[0]);
      const Tensor& ids = in(1);
      int64_t V = tv.shape[0].value, H = tv.shape[1].value, T = ids.shape[0];
      float scale = static_cast<float>(n.attr_float_opt("scale").value_or(1.0));
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32({T, H}));
      for (int64_t t = 0; t < T; ++t) {
        int32_t id = ids.i32[static_cast<size_t>(t)];
        if (id < 0 || id >= V)
          fail_node(ni, "token id " + std::to_string(id) + " at row " + std::to_string(t) + " is outside 0.." +
                            std::to_string(V - 1));
      }
      if (tv.kind == ValueKind::Weight && !weight_cache[static_cast<size_t>(tv.id)]) {
        // Dequantise just the rows needed; the full table may never be used.
        WeightData wd = fetch(tv);
        uint64_t rb = row_bytes(tv.dtype, H);
        for (int64_t t = 0; t < T; ++t)
          dequantize(tv.dtype, wd.data + rb * static_cast<uint64_t>(ids.i32[static_cast<size_t>(t)]),
                     out->f32.data() + t * H, H);
      } else {
        const Tensor& table = in(0);
        for (int64_t t = 0; t < T; ++t)
          std::memcpy(out->f32.data() + t * H, table.f32.data() + ids.i32[static_cast<size_t>(t)] * H,
                      sizeof(float) * static_cast<size_t>(H));
      }
      if (scale != 1.0f)
        for (float& x : out->f32) x *= scale;
      return out;
    }
    case OpKind::RmsNorm: {
      const Tensor &x = in(0), &w = in(1);
      // Per-head form (attr head_dim): each head of a row is a row of its own.
      const int64_t heads = n.attrs.count("head_dim") ? x.shape[1] / n.attr_int("head_dim") : 1;
      int64_t T = x.shape[0] * heads, H = x.shape[1] / heads;
      double eps = n.attr_float("eps");
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32(x.shape));
      for (int64_t t = 0; t < T; ++t) {
        const float* xr = x.f32.data() + t * H;
        const float r = row_inv_rms(xr, H, eps);
        for (int64_t h = 0; h < H; ++h) out->f32[static_cast<size_t>(t * H + h)] = xr[h] * r * w.f32[static_cast<size_t>(h)];
      }
      if (n.inputs.size() == 3) {  // residual: r + the norm, as add(r, rms_norm(x, w)) computes it
        const Tensor& res = in(2);
        for (size_t i = 0; i < out->f32.size(); ++i) out->f32[i] = res.f32[i] + out->f32[i];
      }
      return out;
    }
    case OpKind::MatMul: {
      const Tensor& w = in(1);
      Tensor xq;
      if (x_q8(n)) {
        xq = in(0);
        act_q8_rows(xq);
      }
      const Tensor& x = x_q8(n) ? xq : in(0);
      int64_t T = x.shape[0], K = x.shape[1], N = w.shape[0];
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32({T, N}));
      matmul(x.f32.data(), w.f32.data(), out->f32.data(), T, K, N);
      return out;
    }
    case OpKind::Add:
    case OpKind::Mul: {
      const Tensor &a = in(0), &b = in(1);
      auto out = std::make_shared<Tensor>(a);
      size_t total = a.f32.size(), bn = b.f32.size();
      bool add = n.op == OpKind::Add;
      for (size_t i = 0; i < total; ++i) {
        float bv = b.f32[bn == total ? i : i % bn];
        out->f32[i] = add ? a.f32[i] + bv : a.f32[i] * bv;
      }
      return out;
    }
    case OpKind::Silu: {
      auto out = std::make_shared<Tensor>(in(0));
      for (float& x : out->f32) x = x / (1.0f + std::exp(-x));
      return out;
    }
    case OpKind::GeGlu: {
      const Tensor &gate = in(0), &up = in(1);
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32(gate.shape));
      for (size_t i = 0; i < gate.f32.size(); ++i) out->f32[i] = gelu_tanh(gate.f32[i]) * up.f32[i];
      return out;
    }
    case OpKind::SwiGlu: {
      const Tensor &gate = in(0), &up = in(1);
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32(gate.shape));
      for (size_t i = 0; i < gate.f32.size(); ++i) {
        float gv = gate.f32[i];
        out->f32[i] = gv / (1.0f + std::exp(-gv)) * up.f32[i];
      }
      return out;
    }
    case OpKind::Rope: {
      const Tensor &x = in(0), &pos = in(1);
      const Tensor* ff = n.inputs.size() == 3 ? &in(2) : nullptr;
      int64_t T = x.shape[0], W = x.shape[1];
      int64_t nh = n.attr_int("n_heads"), hd = n.attr_int("head_dim"), n_rot = n.attr_int("n_rot");
      double base = n.attr_float("theta"), freq_scale = n.attr_float_opt("freq_scale").value_or(1.0);
      bool neox = n.attr_str("mode") == "neox";
      auto out = std::make_shared<Tensor>(x);
      std::vector<double> cs(static_cast<size_t>(n_rot / 2)), sn(static_cast<size_t>(n_rot / 2));
      for (int64_t t = 0; t < T; ++t) {
        double p = pos.i32[static_cast<size_t>(t)] * freq_scale;
        for (int64_t i = 0; i < n_rot / 2; ++i) {
          double a = p * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
          if (ff) a /= ff->f32[static_cast<size_t>(i)];
          cs[static_cast<size_t>(i)] = std::cos(a);
          sn[static_cast<size_t>(i)] = std::sin(a);
        }
        for (int64_t h = 0; h < nh; ++h) {
          const float* xr = x.f32.data() + t * W + h * hd;
          float* o = out->f32.data() + t * W + h * hd;
          for (int64_t i = 0; i < n_rot / 2; ++i) {
            int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
            float c = static_cast<float>(cs[static_cast<size_t>(i)]), s = static_cast<float>(sn[static_cast<size_t>(i)]);
            float x0 = xr[i0], x1 = xr[i1];
            o[i0] = x0 * c - x1 * s;
            o[i1] = x0 * s + x1 * c;
          }
        }
      }
      return out;
    }
    case OpKind::KvStore: {
      TensorPtr cache = vals[static_cast<size_t>(n.inputs[0])];
      const Tensor &x = in(1), &pos = in(2);
      int64_t C = cache->shape[0], W = cache->shape[1], T = x.shape[0];
      const bool ring = n.attrs.count("ring") && n.attr_int("ring") != 0;
      for (int64_t t = 0; t < T; ++t) {
        int32_t p = pos.i32[static_cast<size_t>(t)];
        if (p < 0 || (p >= C && !ring))
          fail_node(ni, "position " + std::to_string(p) + " is outside the KV cache (0.." + std::to_string(C - 1) +
                            "); the context is full");
        store_row(cache->f32.data() + (p % C) * W, x.f32.data() + t * W, W, g.value(n.inputs[0]).dtype);
      }
      return cache;  // aliases input 0
    }
    case OpKind::Attention: {
      const Tensor &q = in(0), &k = in(1), &v = in(2), &pos = in(3);
      int64_t nh = n.attr_int("n_heads"), nkv = n.attr_int("n_kv_heads"), hd = n.attr_int("head_dim");
      float scale = static_cast<float>(n.attr_float("scale"));
      int64_t T = q.shape[0], C = k.shape[0], Wq = nh * hd, Wk = nkv * hd, group = nh / nkv;
      // Sliding window: query t sees positions j0..pos[t], position j in row j mod C (a ring, or
      // j itself in a full cache), so a window's keys are read in position order either way.
      const int64_t window = n.attrs.count("window") ? n.attr_int("window") : 0;
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32({T, Wq}));
      std::vector<float> p(static_cast<size_t>(C));
      for (int64_t t = 0; t < T; ++t) {
        int32_t pt = pos.i32[static_cast<size_t>(t)];
        if (pt < 0 || (pt >= C && window == 0))
          fail_node(ni, "position " + std::to_string(pt) + " is outside the KV cache (0.." + std::to_string(C - 1) + ")");
        const int64_t j0 = window > 0 ? std::max<int64_t>(0, pt - window + 1) : 0;
        if (pt - j0 + 1 > C)
          fail_node(ni, "window " + std::to_string(window) + " at position " + std::to_string(pt) +
                            " needs more rows than the cache's " + std::to_string(C));
        int64_t L = pt + 1 - j0;
        for (int64_t h = 0; h < nh; ++h) {
          int64_t kh = h / group;
          const float* qh = q.f32.data() + t * Wq + h * hd;
          float mx = -INFINITY;
          for (int64_t j = 0; j < L; ++j) {
            p[static_cast<size_t>(j)] = dot(qh, k.f32.data() + ((j0 + j) % C) * Wk + kh * hd, hd) * scale;
            mx = std::max(mx, p[static_cast<size_t>(j)]);
          }
          float sum = 0;
          for (int64_t j = 0; j < L; ++j) {
            p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx);
            sum += p[static_cast<size_t>(j)];
          }
          float inv = 1.0f / sum;
          float* o = out->f32.data() + t * Wq + h * hd;
          for (int64_t j = 0; j < L; ++j) {
            float pj = p[static_cast<size_t>(j)] * inv;
            const float* vr = v.f32.data() + ((j0 + j) % C) * Wk + kh * hd;
            for (int64_t d = 0; d < hd; ++d) o[d] += pj * vr[d];
          }
        }
      }
      if (n.inputs.size() == 5)  // the split scratch: the GPU's workspace, untouched here (aliases input 4)
        vals[static_cast<size_t>(n.outputs[1])] = vals[static_cast<size_t>(n.inputs[4])];
      return out;
    }
    case OpKind::LastRow: {
      const Tensor& x = in(0);
      int64_t T = x.shape[0], H = x.shape[1];
      if (T < 1) fail_node(ni, "last_row of an empty tensor");
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32({1, H}));
      std::memcpy(out->f32.data(), x.f32.data() + (T - 1) * H, sizeof(float) * static_cast<size_t>(H));
      return out;
    }
    case OpKind::ArgMax: {
      const Tensor& x = in(0);
      int64_t R = x.shape[0], N = x.shape[1];
      auto out = std::make_shared<Tensor>();
      out->dtype = DType::I32;
      out->shape = {R};
      out->i32.assign(static_cast<size_t>(R), 0);
      for (int64_t r = 0; r < R; ++r) {
        const float* xr = x.f32.data() + r * N;
        int64_t best = 0;
        for (int64_t i = 1; i < N; ++i)
          if (xr[i] > xr[best]) best = i;  // strict: first max wins ties
        out->i32[static_cast<size_t>(r)] = static_cast<int32_t>(best);
      }
      return out;
    }
    // ---- fused ops (compiler/passes; docs/plan-abi.md "Fused ops"). Each is
    // computed with the same code path as its unfused chain, so fused and
    // unfused graphs give bit-identical results here.
    case OpKind::RmsMatMul:
    case OpKind::RmsMatMulSwiGlu: {
      std::vector<const Tensor*> ws;
      const InputRange wr = matmul_weight_inputs(g, n);
      for (size_t i = wr.first; i < wr.last; ++i) ws.push_back(&in(i));
      auto mm = std::make_shared<Tensor>(rms_matmul(n, in(0), in(1), ws));
      if (n.op == OpKind::RmsMatMul) return mm;
      int64_t T = mm->shape[0], N = mm->shape[1], F = N / 2;
      const bool gelu = n.attrs.count("act") && n.attr_str("act") == "gelu_tanh";  // GeGLU, else SwiGLU
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32({T, F}));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t f = 0; f < F; ++f) {
          float gv = mm->f32[static_cast<size_t>(t * N + f)], uv = mm->f32[static_cast<size_t>(t * N + F + f)];
          out->f32[static_cast<size_t>(t * F + f)] = gelu ? gelu_tanh(gv) * uv : gv / (1.0f + std::exp(-gv)) * uv;
        }
      return out;
    }
    case OpKind::MatMulAdd: {
      const Tensor &w = in(1), &r = in(2);
      Tensor xq;
      if (x_q8(n)) {
        xq = in(0);
        act_q8_rows(xq);
      }
      const Tensor& x = x_q8(n) ? xq : in(0);
      int64_t T = x.shape[0], K = x.shape[1], N = w.shape[0];
      auto out = std::make_shared<Tensor>(Tensor::zeros_f32({T, N}));
      matmul(x.f32.data(), w.f32.data(), out->f32.data(), T, K, N);
      for (size_t i = 0; i < out->f32.size(); ++i) out->f32[i] = out->f32[i] + r.f32[i];
      return out;
    }
    case OpKind::RopeStore:
    {
      const size_t ffi = rope_store_ff_input(n);
      return rope_store(ni, vals, in(0), n.inputs.size() > ffi ? &in(ffi) : nullptr);
    }
    case OpKind::RmsMatMulRopeStore: {
      // rope_store(rms_matmul(x, gain, weights), pos, kc, vc [, freq_factors]): inputs x, pos, kc, vc,
      // gain, 1 or 3 weights (rank 2), then the optional freq_factors (rank 1)
      const InputRange wr = matmul_weight_inputs(g, n);
      std::vector<const Tensor*> ws;
      for (size_t i = wr.first; i < wr.last; ++i) ws.push_back(&in(i));
      const Tensor qkv = rms_matmul(n, in(0), in(4), ws);
      return rope_store(ni, vals, qkv, wr.last < n.inputs.size() ? &in(wr.last) : nullptr);
    }
    case OpKind::LmHeadSample: {
      const Tensor &x = in(0), &gain = in(1), &w = in(2);
      int64_t T = x.shape[0], K = x.shape[1], V = w.shape[0];
      if (T < 1) fail_node(ni, "lm_head_sample of an empty tensor");
      Tensor last = Tensor::zeros_f32({1, K});
      std::memcpy(last.f32.data(), x.f32.data() + (T - 1) * K, sizeof(float) * static_cast<size_t>(K));
      std::vector<float> inv;
      Tensor h = rms_activation(n, last, gain, inv);
      auto logits = std::make_shared<Tensor>(Tensor::zeros_f32({1, V}));
      matmul(h.f32.data(), w.f32.data(), logits->f32.data(), 1, K, V);
      scale_rows(*logits, inv);
      int64_t best = 0;
      for (int64_t i = 1; i < V; ++i)
        if (logits->f32[static_cast<size_t>(i)] > logits->f32[static_cast<size_t>(best)]) best = i;  // first max wins
      auto tok = std::make_shared<Tensor>(Tensor::from_i32({static_cast<int32_t>(best)}));
      vals[static_cast<size_t>(n.outputs[1])] = logits;
      return tok;
    }
    case OpKind::Cast:
    case OpKind::Dequant: {  // round every value to the output's dtype (f16 / bf16)
      const DType to = g.value(n.outputs[0]).dtype;
      auto out = std::make_shared<Tensor>(in(0));
      out->dtype = DType::F32;  // values stay in f32 storage, rounded as the GPU rounds them
      for (float& v : out->f32) v = round_to_dtype(to, v);
      return out;
    }
    default:
      fail_node(ni, "the interpreter has no implementation of this op yet", ErrorCode::kUnsupported);
  }
}

Interpreter::Interpreter(const Graph& g, WeightSource weights) : impl_(std::make_unique<Impl>()) {
  verify(g);
  impl_->g = g;
  impl_->weights = std::move(weights);
  impl_->weight_cache.assign(g.values().size(), nullptr);
  impl_->reset_states();
}

Interpreter::~Interpreter() = default;

void Interpreter::share_weights(Interpreter& other) {
  if (!other.impl_->shared) other.impl_->shared = std::make_shared<Impl::SourceCache>();
  impl_->shared = other.impl_->shared;
}

std::map<std::string, Tensor> Interpreter::run(const std::map<std::string, Tensor>& inputs) {
  return impl_->run(inputs);
}

void Interpreter::reset_state() { impl_->reset_states(); }

void Interpreter::share_states(const Interpreter& other) {
  for (const Value& v : impl_->g.values()) {
    if (v.kind != ValueKind::State) continue;
    const auto id = other.impl_->g.find_value(v.name);
    if (!id || other.impl_->g.value(*id).kind != ValueKind::State) continue;  // private to this graph (scratch)
    const TensorPtr& t = other.impl_->states[static_cast<size_t>(*id)];
    const TensorPtr& mine = impl_->states[static_cast<size_t>(v.id)];
    if (!t || !mine || t->shape != mine->shape || t->dtype != mine->dtype)
      throw Error(ErrorCode::kInvalidArgument, "share_states: state %" + v.name + " differs between the graphs",
                  v.name);
    impl_->states[static_cast<size_t>(v.id)] = t;
  }
}

const Tensor* Interpreter::last_value(const std::string& name) const {
  auto id = impl_->g.find_value(name);
  if (!id || impl_->last.empty()) return nullptr;
  const auto& slot = impl_->last[static_cast<size_t>(*id)];
  if (!slot && impl_->g.value(*id).kind == ValueKind::Weight) return impl_->weight_cache[static_cast<size_t>(*id)].get();
  return slot.get();
}

}  // namespace kiln::ir
