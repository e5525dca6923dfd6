// Loggers, one per component ("proxy", "upstream", "offload", "admin", "main") on stderr, and
// the access log ("access") on stdout. Text or JSON lines.
#pragma once

#include <string>

namespace loopguard {

enum class LogFormatKind { Text, Json };

// Creates (or re-configures) every logger. `level`: trace|debug|info|warn|error.
// Returns false if the level is unknown.
bool setupLogging(const std::string& level, LogFormatKind format);

// Writes out buffered access-log lines (called on a timer and at exit).
void flushAccessLog();

}  // namespace loopguard
