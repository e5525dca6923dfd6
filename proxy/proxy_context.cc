#include "proxy/proxy_context.h"

#include <algorithm>

namespace loopguard::proxy {

std::optional<uint64_t> RouteRuntime::capacity() const {
  std::optional<uint64_t> limit = limiter->currentLimit();  // adaptive or fixed
  if (!pool_capacity) return limit;
  uint64_t slots = pool_capacity();
  return limit ? std::min(*limit, slots) : slots;
}

uint64_t RequestIds::nextWord() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void RequestIds::next(std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char text[32];
  for (int half = 0; half < 2; ++half) {
    uint64_t v = nextWord();
    for (int i = 0; i < 16; ++i) {
      text[half * 16 + i] = kHex[v & 0xf];
      v >>= 4;
    }
  }
  out.assign(text, sizeof(text));
}

}  // namespace loopguard::proxy
