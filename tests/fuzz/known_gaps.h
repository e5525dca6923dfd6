// Known gaps: inputs the fuzz targets would flag that loopguard mishandles today, where the fix
// belongs in code another change is rewriting (proxy/http, issue 8). Each rule tolerates exactly
// one gap and names it; when its fix lands, delete the rule and the targets hold the fix in place.
// Every rule here is a bug, never a decision: nothing else may be added to this file.
//
// LOOPGUARD_FUZZ_SHOW_GAPS=1 prints every input that passed only thanks to one of them.
#pragma once

#include <string_view>

#include "tests/fuzz/reference_http.h"

namespace loopguard::fuzz {

// loopguard forwarded `message` (a client's request) that the strict parser refuses as `client`
// says: which known gap that is, or nullptr.
const char* knownFramingGap(const RefResult& client, std::string_view message);

// The head loopguard writes upstream for `target` does not parse: which known gap, or nullptr.
const char* knownTargetGap(std::string_view target);

// A buffer_request route, and the client sent trailer fields: they end up in the upstream head.
const char* knownTrailerGap(bool buffered_with_trailers);

void noteKnownGap(const char* gap, std::string_view input);

}  // namespace loopguard::fuzz
