// Fuzz target: path normalisation (proxy/http/path_normalize.h). Routing sees the normalised path:
// every percent-escape decoded exactly once, repeated slashes merged, "." and ".." segments
// resolved; NUL, backslashes, bad escapes and climbing above the root refused.
//
// For any input: no crash; a refusal says why. An accepted path starts with "/", has no empty,
// "." or ".." segment, is not longer than the input (plus the leading "/"), and - since decoding
// happens once - normalising it again changes nothing, unless it holds a byte that only
// decoding can produce and a raw path may not carry: '%' (from "%25"), a space, control byte or
// byte >= 0x80 ("%20", "%01", "%C3%A9"), which a second pass refuses.
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/path_normalize.h"
#include "tests/fuzz/fuzz_check.h"

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
  for (char c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '%' || u <= 0x20 || u >= 0x7f) return 0;
  }
  std::string again;
  const char* why_again = nullptr;
  FUZZ_CHECK(loopguard::http::normalizePath(out, again, &why_again) == PathStatus::Ok &&
                 again == out,
             "normalising twice changes the path: \"" + printable(again) + "\"; " + where);
  return 0;
}
