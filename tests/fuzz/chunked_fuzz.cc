// Fuzz target: the chunked body validator, alone and with the parser it guards.
//
// The input is a chunked request body (and maybe what follows it on the connection).
//  - ChunkedValidator fed in one piece and byte by byte gives the same verdict.
//  - A body the validator takes whole (it ends exactly at the input's end) is one the strict
//    reference parser takes whole too, with the same end: the validator is never the more
//    lenient of the two about chunk framing. (Trailer fields it only delimits: llhttp checks
//    their syntax.)
//  - The body behind a chunked request head goes through the differential check (the proxy
//    model: llhttp + the validator + re-framing, against the strict parser), so mutations spend
//    their time on chunk syntax rather than on the head.
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/chunked_validator.h"
#include "tests/fuzz/differential_check.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/reference_http.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopguard;
  using namespace loopguard::fuzz;
  std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string where = "body \"" + printable(body) + "\"";

  http::ChunkedValidator whole;
  bool whole_ok = whole.feed(body.data(), body.size());
  http::ChunkedValidator bytewise;
  bool bytewise_ok = true;
  for (size_t i = 0; i < size && bytewise_ok; ++i) bytewise_ok = bytewise.feed(&body[i], 1);
  FUZZ_CHECK(whole_ok == bytewise_ok && whole.done() == bytewise.done(),
             "the verdict depends on how the body is split; " + where);

  static constexpr std::string_view kHead =
      "POST /upload HTTP/1.1\r\nHost: fuzz.test\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string request(kHead);
  request.append(body);
  if (whole_ok && whole.done()) {
    RefResult ref = parseRequest(request);
    // Trailer fields the validator only delimits; llhttp checks their syntax (checkConnection
    // below covers the two together).
    bool llhttp_checks = ref.status == RefStatus::Invalid && ref.why.rfind("trailer", 0) == 0;
    FUZZ_CHECK(llhttp_checks || (ref.status == RefStatus::Complete && ref.consumed == request.size()),
               "the validator takes a body the strict parser " +
                   std::string(ref.status == RefStatus::Invalid ? "refuses: " + ref.why
                                                                : "reads differently") +
                   "; " + where);
  }
  checkConnection(request);
  return 0;
}
