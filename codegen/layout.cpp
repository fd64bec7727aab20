// Weight layouts (codegen.h "weight layouts"): the CPU side of the "planes"
// layout that dequant.cuh's PL / WRow read.
#include <cstring>

#include "codegen/codegen.h"
#include "ir/dtype.h"
#include "ir/error.h"

namespace kiln::codegen {
namespace {

struct Planes {
  uint32_t sb = 0, qb = 0;  // scale bytes (block prefix), quant bytes (the rest)
};
// Must match PL<DT> in kernels/dequant.cuh.
bool planes_of(ir::DType dt, Planes& p) {
  switch (dt) {
    case ir::DType::Q4_0: p = {2, 16}; return true;
    case ir::DType::Q4_1: p = {4, 16}; return true;
    case ir::DType::Q8_0: p = {2, 32}; return true;
    case ir::DType::Q4_K: p = {16, 128}; return true;
    default: return false;
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
    if (p.sb + p.qb != info.block_bytes)
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

const std::vector<std::string>& weight_layouts() {
  static const std::vector<std::string> v = {kLayoutGgml, kLayoutPlanes};
  return v;
}

std::string input_layout(const ir::Graph& g, const ir::Node& n, size_t input, ProgramMode mode,
                         const Target& target) {
  if (mode != ProgramMode::Compiled || input >= n.inputs.size() || target.weight_layout == kLayoutGgml)
    return kLayoutGgml;
  size_t w = SIZE_MAX;
  switch (n.op) {
    case ir::OpKind::MatMul:
    case ir::OpKind::MatMulAdd: w = 1; break;
    case ir::OpKind::RmsMatMul:
    case ir::OpKind::RmsMatMulSwiGlu:
    case ir::OpKind::LmHeadSample: w = 2; break;
    case ir::OpKind::Embed: w = 0; break;
    default: break;
  }
  if (input != w) return kLayoutGgml;
  const ir::Value& v = g.value(n.inputs[input]);
  return layout_supported(v.dtype, target.weight_layout) ? target.weight_layout : std::string(kLayoutGgml);
}

void repack(ir::DType dt, std::string_view layout, int64_t rows, int64_t K, const uint8_t* src, uint8_t* out) {
  Planes p;
  const uint64_t nblk = blocks(dt, layout, rows, K, p);
  const uint64_t bb = ir::dtype_info(dt).block_bytes;
  if (layout == kLayoutGgml) {
    std::memcpy(out, src, nblk * bb);
    return;
  }
  uint8_t* scales = out + nblk * p.qb;
  for (uint64_t i = 0; i < nblk; ++i) {
    std::memcpy(scales + i * p.sb, src + i * bb, p.sb);
    std::memcpy(out + i * p.qb, src + i * bb + p.sb, p.qb);
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
  const uint8_t* scales = in + nblk * p.qb;
  for (uint64_t i = 0; i < nblk; ++i) {
    std::memcpy(dst + i * bb, scales + i * p.sb, p.sb);
    std::memcpy(dst + i * bb + p.sb, in + i * p.qb, p.qb);
  }
}

}  // namespace kiln::codegen
