// Endpoint keys for the advisor: a request target folded to its path template. The query is
// dropped and every segment that looks like an identifier (a number, a UUID, long hex, a long
// opaque token) becomes `{}`, so `/users/42/orders?x=1` and `/users/7/orders` are one endpoint.
// Pure functions: no state, unit-tested in tests/unit/proxy/advice/path_template_test.cc.
#pragma once

#include <string>
#include <string_view>

namespace loopguard::advice {

// What a path becomes when it cannot be kept (too many templates on its route).
inline constexpr std::string_view kOtherTemplate = "{other}";
// Templates longer than this are cut at a segment boundary and end in "/{...}", so one client
// sending huge paths cannot make the advisor hold huge keys.
inline constexpr size_t kMaxTemplateBytes = 256;

// True for a segment that names one thing among many rather than a kind of thing.
bool isIdentifierSegment(std::string_view segment);

// `target` as received (origin-form or absolute-form, with or without a query) to its template,
// appended to `out` (the hot path reuses one buffer, so this allocates nothing once warm).
void appendPathTemplate(std::string& out, std::string_view target);
inline std::string pathTemplate(std::string_view target) {
  std::string out;
  appendPathTemplate(out, target);
  return out;
}

}  // namespace loopguard::advice
