// codegen/family.h: what a kernel family is (internal to codegen/).
//
// A family (GEMV, tiled matmul, attention, rope/KV store, elementwise,
// sampling, embedding) is one unit in codegen/families/<name>.cpp: its
// parameter struct, the predicate that selects it for a node, the emission of
// its kernel (one call into its kernels/<name>.cuh, which #includes what it
// uses) and its launch geometry, computed from kernels/launch.h, the header
// the kernels read too. codegen.cpp only loops over the table of families.
// docs/adding-a-kernel.md walks through adding a variant.
#pragma once
#include <array>
#include <optional>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codegen/codegen.h"
#include "ir/dtype.h"
#include "ir/graph.h"

namespace kiln::codegen::detail {

[[noreturn]] void unsupported(const std::string& msg);
bool is_float(ir::DType t);
std::string dt_macro(ir::DType t);  // "DT_Q4_K": the kernels' dtype id macro
std::string dt_lower(ir::DType t);  // "q4_k"
uint32_t cdiv(int64_t a, int64_t b);  // ceil(a / b), at least 1

// The node being lowered, with its symbolic dims bound for one program.
struct NodeCtx {
  const ir::Graph& g;
  const ir::Node& n;
  const ir::DimBindings& dims;
  const Target& target;
  ProgramMode mode;

  const ir::Value& in(size_t i) const;   // throws kUnsupported when absent
  const ir::Value& out(size_t i) const;
  int64_t dim(const ir::Dim& d) const { return ir::resolve_dim(g, d, dims); }
  int64_t dim(const ir::Value& v, size_t i) const;
  int64_t bucket() const { return dims.tokens; }
  // whether v's rows are the step's tokens (rows >= n_tokens are skipped)
  bool dyn(const ir::Value& v) const { return !v.shape.empty() && v.shape[0].sym == "tokens"; }
  bool compiled() const { return mode == ProgramMode::Compiled; }
  std::string opname() const;
  // Requirements on inputs, each a kUnsupported error naming the op and value.
  void need_f32(const ir::Value& v, const char* what) const;
  void need_float(const ir::Value& v, const char* what) const;
  void need_weight(const ir::Value& w, int64_t K) const;
  // Layout the kernel reads input i in (codegen::input_layout).
  bool planes(size_t input) const { return input_layout(g, n, input, mode, target) == kLayoutPlanes; }
};

// Builds a kernel's signature and its parameter list together: pointers are
// always parameters; scalars become literals in compiled kernels and
// parameters in eager ones (the eager module is shared by every shape).
struct Emit {
  bool compiled;
  std::vector<std::string> sig;
  std::vector<Param> params;
  std::string ptr(ParamKind k, int idx, const char* ctype);
  std::string in(int idx, const char* ctype) { return ptr(ParamKind::Input, idx, ctype); }
  std::string out(int idx, const char* ctype) { return ptr(ParamKind::Output, idx, ctype); }
  std::string step(bool mut = false) { return ptr(ParamKind::Step, 0, mut ? "KilnStep*" : "const KilnStep*"); }
  std::string tokens() { return ptr(ParamKind::Tokens, 0, "i32*"); }
  std::string i(int64_t v);
  std::string f(double v);
};

// One emitted kernel: all lower() needs from a family.
struct Kernel {
  std::string name;                 // eager entry / compiled entry prefix
  std::string header;               // the kernel file the call needs ("gemv.cuh")
  std::string call;                 // the body: one device-function call
  std::vector<std::string> sig;     // from Emit
  std::vector<Param> params;        // from Emit
  std::array<uint32_t, 3> grid{1, 1, 1};
  uint32_t block = 256;
  uint32_t smem = 0;                // dynamic shared memory bytes of the launch
  uint32_t min_blocks = 0;          // __launch_bounds__ minimum blocks per SM (0: none)
  bool own_pdl_wait = false;        // the call waits for the previous kernel itself (kiln_pdl_wait)
  bool early_trigger = false;       // let the next kernel launch right after the wait (codegen.cpp kernel_text)
  ir::DType eager_module = ir::DType::F32;  // the eager module (one per dtype) that holds it
  std::optional<GemmCall> gemm;             // a library GEMM, no kernel (the gemm family)
  void take(Emit& e) {
    sig = std::move(e.sig);
    params = std::move(e.params);
  }
};

class Family {
 public:
  virtual ~Family() = default;
  virtual std::string_view name() const = 0;
  // Selection predicate. Exactly one family selects a node kiln can lower
  // (tested over every op case); a node no family selects is unsupported.
  virtual bool selects(const NodeCtx& c) const = 0;
  // Parameters from the node (validating it), kernel emission, launch geometry.
  virtual Kernel lower(const NodeCtx& c) const = 0;
  // The generic kernels this family puts in the eager module of dtype dt
  // (each has eager_module == dt; lower() in eager mode names one of them).
  virtual std::vector<Kernel> eager_kernels(ir::DType dt) const = 0;
};

// The split-K geometry of an attention node that lowers to the split kernel
// in this program (attention.cpp), nullopt where it lowers to another: the
// GEMV that merges a deferring attention's partial states (att_defer.cuh)
// reads the scratch in this layout.
struct AttentionSplit {
  int64_t T = 0, C = 0, nh = 0, nkv = 0, hd = 0;
  int splits = 0;  // S: the grid's splits, the scratch's stride
  int one_block_rows = 0;  // steps of at most this many rows take one split
  bool tc = false;  // on tensor cores (k_attention_split_tc)
  int defer = 0;    // defer_merge (either split kernel, any head_dim): its consumer merges 2..defer splits (else 0)
  int64_t window = 0;  // sliding window (attr window; 0: none): the CUDA-core kernel, rows from the ring
};
std::optional<AttentionSplit> attention_split(const NodeCtx& c);
// The attention node that produced value v (its scratch' output), or nullptr.
const ir::Node* producer_of(const ir::Graph& g, ir::ValueId v);

// The families, one per file in codegen/families/.
const Family& gemv_family();
const Family& tiled_family();
const Family& embed_family();
const Family& elementwise_family();
const Family& rope_family();
const Family& attention_family();
const Family& sampling_family();
const Family& convert_family();
const Family& gemm_family();
const Family& flash_attention_family();

// The table codegen.cpp loops over.
const std::vector<const Family*>& families();

}  // namespace kiln::codegen::detail
