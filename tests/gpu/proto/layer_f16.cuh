// The decode layer the persistent-kernel prototypes run (layer_persistent.cu,
// layer_ring.cu): the 1B's four GEMVs with f16 weights and f32 activations,
// attention left out (q stands in for its output):
//   qkv = Wqkv (3072 x 2048) . rms(x)        (RMS folded: the sum times 1/rms)
//   x  += Wo   (2048 x 2048) . qkv[0:2048]
//   gu  = Wgu  (16384 x 2048) . rms(x)
//   x  += Wd   (2048 x 8192) . silu(g) * u
// Here: the weights (made on the device from a hash), the starting x, the
// host's reference for L layers, the relative error against it, the copy
// bandwidth the prototypes' fractions are taken against, and their timing.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "proto.cuh"

namespace layer_f16 {

constexpr int H = 2048, QKV = 3072, FF = 8192;
// halves of Wqkv, Wo, Wgu, Wd; rows of K halves, row-major
constexpr size_t kElems[4] = {(size_t)QKV * H, (size_t)H* H, (size_t)2 * FF* H, (size_t)H* FF};
constexpr size_t kPerLayer = kElems[0] + kElems[1] + kElems[2] + kElems[3];

__host__ __device__ inline uint32_t mix(uint64_t i) {
  i ^= i >> 33;
  i *= 0xff51afd7ed558ccdull;
  i ^= i >> 33;
  i *= 0xc4ceb9fe1a85ec53ull;
  i ^= i >> 33;
  return (uint32_t)i;
}
// weight e of tensor t: uniform in +-0.04 (f16), x0: uniform in +-1
__host__ __device__ inline float unit(uint32_t h) { return (h >> 8) * (1.f / 16777216.f) - 0.5f; }
__host__ __device__ inline float wval(uint64_t t, uint64_t e) {
  return unit(mix(t * 0x9E3779B97F4A7C15ull + e)) * 0.08f;
}
__host__ __device__ inline float xval(uint64_t e) { return unit(mix(0xabcdefull + e)) * 2.f; }

__global__ void fill_weights(__half* w, size_t n, uint64_t t) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    w[i] = __float2half(wval(t, i));
}

// nl layers' weights in one allocation: [l] = {Wqkv, Wo, Wgu, Wd} (tensor 4l + t)
inline std::vector<std::array<const __half*, 4>> make_weights(int nl) {
  __half* buf = nullptr;
  CK(cudaMalloc(&buf, kPerLayer * nl * sizeof(__half)));
  std::vector<std::array<const __half*, 4>> w(nl);
  for (int l = 0; l < nl; ++l) {
    __half* p = buf + kPerLayer * l;
    for (int t = 0; t < 4; ++t) {
      fill_weights<<<1024, 256>>>(p, kElems[t], 4 * l + t);
      w[l][t] = p;
      p += kElems[t];
    }
  }
  CK(cudaGetLastError());
  return w;
}

inline std::vector<float> x0() {
  std::vector<float> x(H);
  for (int i = 0; i < H; ++i) x[i] = xval(i);
  return x;
}

// x after nl layers, in double sums over the f16-rounded weights
inline void host_layers(int nl, std::vector<float>& x) {
  std::vector<float> qkv(QKV), gu(2 * FF), a(FF);
  auto gemv = [](uint64_t t, int n, int k, const float* in, float scale, float* out, bool add) {
    for (int r = 0; r < n; ++r) {
      double s = 0;
      for (int c = 0; c < k; ++c) s += (double)__half2float(__float2half(wval(t, (uint64_t)r * k + c))) * in[c];
      out[r] = add ? out[r] + (float)s * scale : (float)s * scale;
    }
  };
  auto inv_rms = [](const std::vector<float>& v) {
    double ss = 0;
    for (float f : v) ss += (double)f * f;
    return (float)(1.0 / std::sqrt(ss / v.size() + 1e-5));
  };
  for (int l = 0; l < nl; ++l) {
    gemv(4 * l + 0, QKV, H, x.data(), inv_rms(x), qkv.data(), false);
    gemv(4 * l + 1, H, H, qkv.data(), 1.f, x.data(), true);
    gemv(4 * l + 2, 2 * FF, H, x.data(), inv_rms(x), gu.data(), false);
    for (int i = 0; i < FF; ++i) a[i] = gu[i] / (1.f + std::exp(-gu[i])) * gu[FF + i];
    gemv(4 * l + 3, H, FF, a.data(), 1.f, x.data(), true);
  }
}

// ||got - want|| / ||want|| of the H floats at device pointer x
inline double rel_err(const float* x, const std::vector<float>& want) {
  std::vector<float> got(H);
  CK(cudaMemcpy(got.data(), x, H * 4, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (int i = 0; i < H; ++i) {
    num += (double)(got[i] - want[i]) * (got[i] - want[i]);
    den += (double)want[i] * want[i];
  }
  return std::sqrt(num / den);
}

// device-to-device copy of 1 GiB, median of 7, read + write counted: GB/s
inline double copy_gbps() {
  const size_t cb = 1ull << 30;
  void *a = nullptr, *b = nullptr;
  CK(cudaMalloc(&a, cb));
  CK(cudaMalloc(&b, cb));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int r = 0; r < 7; ++r) {
    CK(cudaEventRecord(e0));
    CK(cudaMemcpyAsync(b, a, cb, cudaMemcpyDeviceToDevice));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * cb / (median(t) * 1e-3) / 1e9;
}

// median of 7 timed runs after 2 warm-ups, ms; reset() runs before each, untimed
template <class Reset, class Launch>
inline double time_ms(Reset reset, Launch launch) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int r = 0; r < 9; ++r) {
    reset();
    CK(cudaEventRecord(e0));
    launch();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    if (r >= 2) t.push_back(ms);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return median(t);
}

}  // namespace layer_f16
