#include "proxy/proxy_context.h"

namespace loopguard::proxy {

void RequestIds::next(std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.clear();
  for (int half = 0; half < 2; ++half) {
    uint64_t v = rng_();
    for (int i = 0; i < 16; ++i) {
      out.push_back(kHex[v & 0xf]);
      v >>= 4;
    }
  }
}

}  // namespace loopguard::proxy
