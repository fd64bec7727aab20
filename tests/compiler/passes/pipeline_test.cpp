// run_pipeline: option checking, verification around passes, dumps, progress.
#include <gtest/gtest.h>

#include <sstream>

#include "compiler/passes/pipeline.h"
#include "ir/graph.h"

namespace {

using kiln::Error;
using kiln::ErrorCode;
using kiln::passes::Pass;
using kiln::passes::PipelineOptions;

const char* kSmall = R"(graph {
  sym tokens <= 4
  input %x : f32[tokens, 8]
  input %r : f32[tokens, 8]
  weight %wo : f16[8, 8] = "wo"
  %o : f32[tokens, 8] = matmul(%x, %wo)
  %y : f32[tokens, 8] = add(%r, %o)
  output %y
}
)";

TEST(Pipeline, DefaultOrder) {
  std::vector<std::string> names;
  for (const auto& p : kiln::passes::default_pipeline()) {
    names.push_back(p.name);
    EXPECT_FALSE(p.summary.empty()) << p.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"fuse-qkv-rope-store", "fuse-gate-up-swiglu", "fuse-residual",
                                             "fold-rms-norm", "fuse-lm-head-sample", "fuse-norm-residual",
                                             "dce", "split-decode-attention"}));
}

TEST(Pipeline, UnknownPassNamesListValidOnes) {
  auto g = kiln::ir::parse(kSmall);
  for (int which = 0; which < 2; ++which) {
    PipelineOptions opt;
    (which ? opt.disable : opt.dump_after).push_back("fuse-everything");
    try {
      kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), opt);
      FAIL() << "expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      std::string msg = e.what();
      EXPECT_NE(msg.find("fuse-everything"), std::string::npos) << msg;
      EXPECT_NE(msg.find("fuse-residual"), std::string::npos) << msg;
      EXPECT_NE(msg.find("dce"), std::string::npos) << msg;
    }
  }
}

TEST(Pipeline, CallbackDumpAndDisable) {
  auto g = kiln::ir::parse(kSmall);
  std::ostringstream dump;
  std::vector<std::pair<std::string, bool>> seen;
  PipelineOptions opt;
  opt.dump = &dump;
  opt.dump_after = {"fuse-residual"};
  opt.disable = {"dce"};
  opt.on_pass = [&](const std::string& p, bool changed, double secs) {
    EXPECT_GE(secs, 0.0);
    seen.emplace_back(p, changed);
  };
  auto out = kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), opt);
  ASSERT_EQ(seen.size(), 7u);  // dce disabled
  EXPECT_EQ(seen[2], (std::pair<std::string, bool>{"fuse-residual", true}));
  EXPECT_EQ(seen[0].second, false);
  std::string d = dump.str();
  EXPECT_NE(d.find("fuse-residual"), std::string::npos) << d;
  EXPECT_NE(d.find("matmul_add(%x, %wo, %r)"), std::string::npos) << d;
  EXPECT_EQ(d.find("fold-rms-norm"), std::string::npos) << "only the requested pass is dumped:\n" << d;
  ASSERT_EQ(out.nodes().size(), 1u);
  EXPECT_EQ(out.nodes()[0].op, kiln::ir::OpKind::MatMulAdd);

  std::ostringstream all;
  opt.dump = &all;
  opt.dump_after = {"all"};
  opt.on_pass = nullptr;
  kiln::passes::run_pipeline(g, kiln::passes::default_pipeline(), opt);
  for (const char* p : {"'fuse-qkv-rope-store'", "'fuse-gate-up-swiglu'", "'fold-rms-norm'", "'fuse-lm-head-sample'"})
    EXPECT_NE(all.str().find(p), std::string::npos) << p;
}

TEST(Pipeline, BrokenPassIsNamed) {
  Pass bad{"break-it", "drops the output's producer", [](kiln::ir::Graph& g) {
             g.nodes().pop_back();
             return true;
           }};
  try {
    kiln::passes::run_pipeline(kiln::ir::parse(kSmall), {bad}, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_NE(std::string(e.what()).find("break-it"), std::string::npos) << e.what();
  }
}

TEST(Pipeline, InvalidInputGraphIsRejected) {
  auto g = kiln::ir::parse(kSmall);
  g.mutable_outputs().clear();  // no outputs: verify() fails before any pass
  bool ran = false;
  Pass p{"probe", "", [&](kiln::ir::Graph&) {
           ran = true;
           return false;
         }};
  EXPECT_THROW(kiln::passes::run_pipeline(g, {p}, {}), Error);
  EXPECT_FALSE(ran);
}

}  // namespace
