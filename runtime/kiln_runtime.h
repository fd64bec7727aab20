// The kiln runtime's public API: load a plan, run it.
//
//   auto model = kiln::rt::Model::load("model.plan", {});      // verify, upload, build graphs
//   kiln::rt::Session s = model->session();
//   auto ids = s.encode("Hello");
//   s.generate(ids, {}, [](int32_t, std::string_view text) { fputs(...); return true; });
//
// Links nothing of the compiler; needs only the plan file and an NVIDIA GPU.
#pragma once
#include <memory>
#include <string>

#include "runtime/engine/engine.h"
#include "runtime/engine/session.h"
#include "runtime/plan/plan.h"
#include "runtime/tokenizer/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"

namespace kiln::rt {

class Model {
 public:
  // Maps and verifies the plan, checks the device, allocates the weights and
  // the arena, loads the kernels and instantiates the CUDA graphs.
  static std::unique_ptr<Model> load(const std::string& plan_path, const EngineOptions& opt);

  const Plan& plan() const { return plan_; }
  Engine& engine() { return *engine_; }
  const Tokenizer& tokenizer() const { return tok_; }
  int32_t context_length() const { return static_cast<int32_t>(plan_.model().context_length()); }
  Session session() { return Session(*engine_, tok_, context_length()); }
  // The chat template of the model (family kUnknown when it has none kiln knows).
  const ChatTemplate& chat_template() const { return chat_; }

 private:
  Model(Plan p, Tokenizer t) : plan_(std::move(p)), tok_(std::move(t)) {}
  Plan plan_;
  Tokenizer tok_;
  ChatTemplate chat_;
  std::unique_ptr<Engine> engine_;
};

// Plain-data views of the verified plan for the engine and the tokenizer.
EngineInputs engine_inputs(const Plan& p);
VocabData vocab_from_plan(const Plan& p);

}  // namespace kiln::rt
