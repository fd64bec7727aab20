// Weight layouts (codegen.h "weight layouts"): the CPU side of the "planes"
// layout that dequant.cuh's PL / WRow read.
#include <cstring>

#include "codegen/codegen.h"
#include "ir/dequant.h"
#include "ir/dtype.h"
#include "ir/error.h"

namespace kiln::codegen {
namespace {

struct Planes {
  uint32_t sb = 0, qb = 0;  // scale bytes, quant bytes of a block
  uint32_t qoff = 0;        // where the quants start in the GGUF block (the scale bytes are the rest)
};
// Must match PL<DT> in kernels/dequant.cuh.
bool planes_of(ir::DType dt, Planes& p) {
  switch (dt) {
    case ir::DType::Q4_0: p = {2, 16, 2}; return true;
    case ir::DType::Q4_1: p = {4, 16, 4}; return true;
    case ir::DType::Q8_0: p = {2, 32, 2}; return true;
    case ir::DType::Q4_K: p = {16, 128, 16}; return true;
    case ir::DType::Q6_K: p = {18, 192, 0}; return true;  // ql, qh first; scales, d after
    default: return false;
  }
}

// q4_k's 12 scale bytes (GGUF: 6-bit scales and mins of 8 sub-blocks, the
// top 2 bits of sub-blocks 4..7 in the top bits of bytes 0..7) <-> the planes
// order: four 24-bit groups, group p = sc[2p] | sc[2p+1] << 6 | m[2p] << 12 |
// m[2p+1] << 18 (dequant.cuh k4p_scale_min). A bijection on 96 bits.
void k4_to_planes(const uint8_t* in, uint8_t* out) {
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) ir::k4_scale_min(in, j, &sc[j], &m[j]);
  for (int p = 0; p < 4; ++p) {
    const uint32_t g = uint32_t(sc[2 * p]) | uint32_t(sc[2 * p + 1]) << 6 | uint32_t(m[2 * p]) << 12 |
                       uint32_t(m[2 * p + 1]) << 18;
    for (int b = 0; b < 3; ++b) out[3 * p + b] = static_cast<uint8_t>(g >> (8 * b));
  }
}
void k4_from_planes(const uint8_t* in, uint8_t* out) {
  int sc[8], m[8];
  for (int p = 0; p < 4; ++p) {
    const uint32_t g = uint32_t(in[3 * p]) | uint32_t(in[3 * p + 1]) << 8 | uint32_t(in[3 * p + 2]) << 16;
    sc[2 * p] = g & 0x3F;
    sc[2 * p + 1] = (g >> 6) & 0x3F;
    m[2 * p] = (g >> 12) & 0x3F;
    m[2 * p + 1] = (g >> 18) & 0x3F;
  }
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4));
  }
}

// Number of blocks of a rows x K matrix; checks the request.
uint64_t blocks(ir::DType dt, std::string_view layout, int64_t rows, int64_t K, Planes& p) {
  if (!layout_supported(dt, layout))
    throw Error(ErrorCode::kInvalidArgument, "weight layout '" + std::string(layout) + "' does not hold dtype " +
                                                 std::string(ir::dtype_name(dt)));
  const auto& info = ir::dtype_info(dt);
  if (rows < 0 || K <= 0 || K % info.block_elems != 0)
    throw Error(ErrorCode::kInvalidArgument, "weight of " + std::to_string(rows) + " rows of " + std::to_string(K) +
                                                 " elements is not a whole number of " +
                                                 std::string(ir::dtype_name(dt)) + " blocks");
  if (layout == kLayoutPlanes) {
    planes_of(dt, p);
    if (p.sb + p.qb != info.block_bytes || (p.qoff != 0 && p.qoff != p.sb))
      throw Error(ErrorCode::kInternal, "planes layout of " + std::string(ir::dtype_name(dt)) + " does not cover its block");
  }
  return static_cast<uint64_t>(rows) * static_cast<uint64_t>(K / info.block_elems);
}

}  // namespace

bool layout_supported(ir::DType dt, std::string_view layout) {
  Planes p;
  if (layout == kLayoutGgml) return true;
  if (layout == kLayoutPlanes) return planes_of(dt, p);
  return false;
}

bool layout_fits(ir::DType dt, std::string_view layout, int64_t K) {
  Planes p;
  if (layout != kLayoutPlanes) return layout_supported(dt, layout);
  if (!planes_of(dt, p)) return false;
  const int64_t be = ir::dtype_info(dt).block_elems;
  return K > 0 && K % be == 0 && (K / be) * p.sb % 16 == 0;  // every row's quants start 16-byte aligned
}

const std::vector<std::string>& weight_layouts() {
  static const std::vector<std::string> v = {kLayoutGgml, kLayoutPlanes};
  return v;
}

std::string input_layout(const ir::Graph& g, const ir::Node& n, size_t input, ProgramMode mode,
                         const Target& target) {
  (void)mode;  // eager programs read the same blobs (their kernels come in both layouts)
  if (input >= n.inputs.size() || target.weight_layout == kLayoutGgml) return kLayoutGgml;
  // a matmul-family node's weights (an rms_matmul may have several:
  // fuse-qkv-parts), or an embedding table / dequant source (input 0)
  const ir::InputRange wr = ir::matmul_weight_inputs(g, n);
  const bool table = (n.op == ir::OpKind::Embed || n.op == ir::OpKind::Dequant) && input == 0;
  const bool is_w = table || (input >= wr.first && input < wr.last);
  if (!is_w) return kLayoutGgml;
  const ir::Value& v = g.value(n.inputs[input]);
  const bool fits = v.shape.size() == 2 && v.shape[1].is_static() &&
                    layout_fits(v.dtype, target.weight_layout, v.shape[1].value);
  return fits ? target.weight_layout : std::string(kLayoutGgml);
}

void repack(ir::DType dt, std::string_view layout, int64_t rows, int64_t K, const uint8_t* src, uint8_t* out) {
  Planes p;
  const uint64_t nblk = blocks(dt, layout, rows, K, p);
  const uint64_t bb = ir::dtype_info(dt).block_bytes;
  if (layout == kLayoutGgml) {
    std::memcpy(out, src, nblk * bb);
    return;
  }
  const uint64_t nb = static_cast<uint64_t>(K / ir::dtype_info(dt).block_elems);
  const uint32_t pre = p.qoff, post = p.sb - p.qoff;  // scale bytes before / after the quants
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* q = out + static_cast<uint64_t>(r) * nb * bb;
    uint8_t* s = q + nb * p.qb;
    for (uint64_t i = 0; i < nb; ++i) {
      const uint8_t* b = src + (static_cast<uint64_t>(r) * nb + i) * bb;
      std::memcpy(s + i * p.sb, b, pre);
      std::memcpy(s + i * p.sb + pre, b + p.qoff + p.qb, post);
      std::memcpy(q + i * p.qb, b + p.qoff, p.qb);
      if (dt == ir::DType::Q4_K) k4_to_planes(b + 4, s + i * p.sb + 4);  // after d, dmin
    }
  }
}

void unpack(ir::DType dt, std::string_view layout, int64_t rows, int64_t K, const uint8_t* in, uint8_t* dst) {
  Planes p;
  const uint64_t nblk = blocks(dt, layout, rows, K, p);
  const uint64_t bb = ir::dtype_info(dt).block_bytes;
  if (layout == kLayoutGgml) {
    std::memcpy(dst, in, nblk * bb);
    return;
  }
  const uint64_t nb = static_cast<uint64_t>(K / ir::dtype_info(dt).block_elems);
  const uint32_t pre = p.qoff, post = p.sb - p.qoff;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* q = in + static_cast<uint64_t>(r) * nb * bb;
    const uint8_t* s = q + nb * p.qb;
    for (uint64_t i = 0; i < nb; ++i) {
      uint8_t* b = dst + (static_cast<uint64_t>(r) * nb + i) * bb;
      std::memcpy(b, s + i * p.sb, pre);
      std::memcpy(b + p.qoff + p.qb, s + i * p.sb + pre, post);
      std::memcpy(b + p.qoff, q + i * p.qb, p.qb);
      if (dt == ir::DType::Q4_K) k4_from_planes(s + i * p.sb + 4, b + 4);
    }
  }
}

}  // namespace kiln::codegen
