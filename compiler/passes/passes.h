// The individual passes of the default pipeline, one file each. Each returns
// a Pass whose run() rewrites every exact match of its pattern and returns
// whether it changed the graph; anything that does not match exactly
// (extra consumers, other dtypes or shapes, unknown attributes) is left as is.
#pragma once
#include "compiler/passes/pipeline.h"

namespace kiln::passes {

Pass fuse_qkv_rope_store_pass();   // "fuse-qkv-rope-store"
Pass fuse_gate_up_swiglu_pass();   // "fuse-gate-up-swiglu"
Pass fuse_residual_pass();         // "fuse-residual"
Pass fuse_norm_residual_pass();    // "fuse-norm-residual"
Pass fold_rms_norm_pass();         // "fold-rms-norm"
Pass fuse_lm_head_sample_pass();   // "fuse-lm-head-sample"
Pass dce_pass();                   // "dce"
Pass split_decode_attention_pass();  // "split-decode-attention"
Pass tensor_core_gemm_pass();      // "tensor-core-gemm" (prefill programs only)
Pass fold_cast_pass();             // "fold-cast" (prefill programs only)
Pass fuse_qkv_parts_pass();        // "fuse-qkv-parts" (decode programs only)
Pass q8_activations_pass();        // "q8-activations" (decode programs only)
Pass fuse_qkv_rope_epilogue_pass();   // "fuse-qkv-rope-epilogue" (decode programs only)
Pass defer_attention_merge_pass();    // "defer-attention-merge" (decode programs only)

}  // namespace kiln::passes
