// Stage "weights" of the compile driver: where each weight source lives in the
// plan's weights section, per layout its readers want.
//
// codegen::input_layout names the layout each kernel input is read in (the
// target's --weight-layout where the weight's dtype and row length fit it,
// for compiled and eager kernels alike, else the GGUF "ggml" blocks). One
// blob is stored per (source, layout). A fused weight whose source is
// "a+b+c" (rows concatenated by a pass) is one blob; a program's separate
// a, b, c (the eager graph's) are views into it (no extra memory): every
// layout keeps whole rows of GGUF row size.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "codegen/codegen.h"
#include "compiler/gguf/gguf.h"
#include "compiler/plan/plan_spec.h"
#include "ir/graph.h"

namespace kiln::compile {

// A graph whose weights the plan must hold, and how its kernels are built.
struct GraphUse {
  const ir::Graph* g;
  ProgramMode mode;
};

struct WeightPlace {
  uint64_t offset = 0, bytes = 0;  // in the weights section
};

struct WeightLayout {
  // The blobs, offsets assigned (plan::assign_weight_offsets), in this order:
  // concatenated sources first, then single ones, each in its graphs' order.
  std::vector<plan::WeightSpec> blobs;
  // (source, layout) -> place; a part of a "ggml" concatenated blob is a view
  // into that blob.
  std::map<std::pair<std::string, std::string>, WeightPlace> where;

  // The place of `source` in `layout`; throws kiln::Error(kInternal) when the
  // layout stage did not store it so.
  WeightPlace find(const std::string& source, const std::string& layout) const;
  // End of the last blob: the weights section's size.
  uint64_t section_bytes() const;
};

// Reads every weight the graphs reference (and the layouts their readers want,
// under `target`) and lays the blobs out. Blob bytes are filled lazily at plan
// write time (WeightSpec::fill, repacking when the layout is not "ggml").
// Throws kiln::Error(kFormat) for a weight missing from the file and
// kInternal for a fused source whose parts mix types or row lengths.
WeightLayout layout_weights(const gguf::File& f, const std::vector<GraphUse>& graphs, const codegen::Target& target);

}  // namespace kiln::compile
