// Fuzz target: path normalisation (proxy/http/path_normalize.h, from another change; registered
// in CMakeLists.txt once that file is merged). Routing sees the normalised path (SPEC: RFC 3986
// percent-decoding of unreserved characters, "." and ".." segments resolved, repeated slashes
// merged; %2F and %5C refused or kept from reaching another route).
//
// For any input: no crash; a refusal says why. An accepted path starts with "/", has no empty,
// "." or ".." segment, no percent-encoded unreserved character, is not longer than the input
// (plus the leading "/"), and normalising it again changes nothing.
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/path_normalize.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/reference_http.h"

namespace {

bool unreserved(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using loopguard::fuzz::printable;
  using loopguard::http::PathStatus;
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  std::string out;
  const char* why = nullptr;
  PathStatus status = loopguard::http::normalizePath(raw, out, &why);
  std::string where = "path \"" + printable(raw) + "\" -> \"" + printable(out) + "\"";
  if (status != PathStatus::Ok) {
    FUZZ_CHECK(why != nullptr && why[0] != '\0', "a refusal without a reason; " + where);
    return 0;
  }
  FUZZ_CHECK(!out.empty() && out[0] == '/', "normalised path does not start with /; " + where);
  FUZZ_CHECK(out.size() <= raw.size() + 1, "normalised path grew; " + where);
  FUZZ_CHECK(out.find("//") == std::string::npos, "repeated slash left; " + where);
  size_t start = 1;
  while (start <= out.size()) {
    size_t slash = out.find('/', start);
    if (slash == std::string::npos) slash = out.size();
    std::string_view segment = std::string_view(out).substr(start, slash - start);
    FUZZ_CHECK(segment != "." && segment != "..", "dot segment left; " + where);
    start = slash + 1;
  }
  for (size_t i = 0; i + 2 < out.size(); ++i) {
    if (out[i] != '%') continue;
    int hi = loopguard::fuzz::refHexDigit(out[i + 1]);
    int lo = loopguard::fuzz::refHexDigit(out[i + 2]);
    FUZZ_CHECK(hi < 0 || lo < 0 || !unreserved(hi * 16 + lo),
               "percent-encoded unreserved character left; " + where);
  }
  std::string again;
  const char* why_again = nullptr;
  FUZZ_CHECK(loopguard::http::normalizePath(out, again, &why_again) == PathStatus::Ok &&
                 again == out,
             "normalising twice changes the path: \"" + printable(again) + "\"; " + where);
  return 0;
}
