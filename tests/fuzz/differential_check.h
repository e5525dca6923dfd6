// The differential check: no desync between what loopguard reads and what it forwards.
//
// The input is what a client sends on one connection (one request or several, pipelined).
// The proxy model (proxy_model.h) runs it through loopguard's parser, header rules, upstream
// head writer and body re-framing; the independent strict parser (reference_http.h) then reads
//  1. the bytes loopguard would write upstream: they must parse, as exactly one message per
//     forwarded request, to the method, target, headers and body loopguard read (what the
//     upstream sees is what the proxy thought the request was), and
//  2. the client's bytes: where the strict parser reads a request loopguard forwarded, both
//     must agree on its method, target, version, header fields, framing, body and end; and
//     loopguard must not forward a request the strict parser finds mis-framed (obs-fold, bare
//     LF or CR, runs of SP in the request line, conflicting lengths, a coding other than
//     chunked...).
// Each input runs three times: in one read, in many small reads (the two readings must agree)
// and with the route buffering the body. A broken property aborts (FUZZ_CHECK).
#pragma once

#include <string_view>

namespace loopguard::fuzz {

void checkConnection(std::string_view input);

}  // namespace loopguard::fuzz
