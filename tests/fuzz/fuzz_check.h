// FUZZ_CHECK(condition, message): a broken property aborts, so libFuzzer (and the replay
// driver) records the input as a crash and prints what was expected.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace loopguard::fuzz {

[[noreturn]] inline void fuzzFail(const char* file, int line, const char* condition,
                                  const std::string& message) {
  std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", file, line, condition,
               message.c_str());
  std::abort();
}

// Printable form of bytes for a failure message (control bytes as \xNN).
inline std::string printable(std::string_view bytes, size_t max = 400) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f || c == '\\') {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (bytes.size() > max) out += "...";
  return out;
}

}  // namespace loopguard::fuzz

#define FUZZ_CHECK(condition, message)                                               \
  do {                                                                               \
    if (!(condition)) ::loopguard::fuzz::fuzzFail(__FILE__, __LINE__, #condition, (message)); \
  } while (0)
