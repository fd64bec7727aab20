// The pieces every kernel family shares (family.h).
#include "codegen/family.h"

#include <cctype>
#include <cstdio>
#include <cstring>

namespace kiln::codegen::detail {
using ir::DType;

void unsupported(const std::string& msg) { throw Error(ErrorCode::kUnsupported, "codegen: " + msg); }

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

std::string dt_macro(DType t) {
  std::string n(ir::dtype_name(t));
  for (auto& c : n) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return "DT_" + n;
}
std::string dt_lower(DType t) { return std::string(ir::dtype_name(t)); }

uint32_t cdiv(int64_t a, int64_t b) { return static_cast<uint32_t>(std::max<int64_t>(1, (a + b - 1) / b)); }

const ir::Value& NodeCtx::in(size_t i) const {
  if (i >= n.inputs.size()) unsupported(opname() + " needs input " + std::to_string(i));
  return g.value(n.inputs[i]);
}
const ir::Value& NodeCtx::out(size_t i) const {
  if (i >= n.outputs.size()) unsupported(opname() + " needs output " + std::to_string(i));
  return g.value(n.outputs[i]);
}
int64_t NodeCtx::dim(const ir::Value& v, size_t i) const {
  if (i >= v.shape.size()) unsupported("value %" + v.name + " has too few dimensions");
  return dim(v.shape[i]);
}
std::string NodeCtx::opname() const { return std::string(ir::op_info(n.op).name); }

void NodeCtx::need_f32(const ir::Value& v, const char* what) const {
  if (v.dtype != DType::F32)
    unsupported(opname() + ": " + what + " %" + v.name + " is " + dt_lower(v.dtype) + ", kernels take f32");
}
void NodeCtx::need_float(const ir::Value& v, const char* what) const {
  if (!is_float(v.dtype))
    unsupported(opname() + ": " + what + " %" + v.name + " is " + dt_lower(v.dtype) + ", expected f32, f16 or bf16");
}
void NodeCtx::need_weight(const ir::Value& w, int64_t K) const {
  if (w.dtype == DType::I32 || !ir::dtype_info(static_cast<uint32_t>(w.dtype)))
    unsupported(opname() + ": weight %" + w.name + " has dtype " + dt_lower(w.dtype) + " which has no GPU kernel");
  const uint32_t qk = is_float(w.dtype) ? 8 : ir::dtype_info(w.dtype).block_elems;
  if (K <= 0 || K % qk != 0)
    unsupported(opname() + ": weight %" + w.name + " row length " + std::to_string(K) + " is not a multiple of " +
                std::to_string(qk) + " (" + dt_lower(w.dtype) + " kernel granule)");
}

std::string Emit::ptr(ParamKind k, int idx, const char* ctype) {
  std::string name = "p" + std::to_string(sig.size());
  sig.push_back(std::string(ctype) + " " + name);
  params.push_back(Param{k, idx});
  return name;
}
std::string Emit::i(int64_t v) {
  if (compiled) return std::to_string(v);
  std::string name = "p" + std::to_string(sig.size());
  sig.push_back("int " + name);
  params.push_back(Param{ParamKind::I32, 0, v, 0.f});
  return name;
}
std::string Emit::f(double dv) {
  const float v = static_cast<float>(dv);
  if (compiled) {  // exact: the float's bits
    uint32_t u;
    std::memcpy(&u, &v, 4);
    char buf[48];
    std::snprintf(buf, sizeof buf, "__int_as_float(0x%08x)", u);
    return buf;
  }
  std::string name = "p" + std::to_string(sig.size());
  sig.push_back("float " + name);
  params.push_back(Param{ParamKind::F32, 0, 0, v});
  return name;
}

}  // namespace kiln::codegen::detail
