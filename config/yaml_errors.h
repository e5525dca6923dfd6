// Plain-words explanations for YAML syntax errors. yaml-cpp says "end of map not found" or
// "illegal map value" and points where the parser gave up, which for an indentation mistake is
// often the line after the one to fix (the first key of a block sets its column; the next key is
// where the parser notices). This looks at the text itself: a tab in the indentation, a line that
// lines up with no enclosing block, a key indented under a line that already has a value, a
// "-name" missing its space, a bracket never closed. Pure; internal to config/.
#pragma once

#include <string>
#include <string_view>

#include "config/config.h"

namespace loopguard::config {

struct YamlDiagnosis {
  SourcePos pos;
  std::string message;  // the whole message, "YAML syntax error: ..."
};

// `at` and `parser_message` are what yaml-cpp reported (1-based position).
YamlDiagnosis explainYamlError(std::string_view text, SourcePos at,
                               const std::string& parser_message);

}  // namespace loopguard::config
