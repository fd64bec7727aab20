// Placeholder until the verb is implemented: registers nothing usable.
#include "compiler/cli/verbs.h"
namespace kiln::cli {
void register_synth(CLI::App& app) { (void)app; }
}  // namespace kiln::cli
