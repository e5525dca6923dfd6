// The test's end of a socketpair: what a unit test plays the peer with.
#pragma once

#include <unistd.h>

#include <string>
#include <string_view>

namespace loopguard::testing {

// Everything the peer has been sent so far (the fd is non-blocking).
inline std::string readAvailable(int fd) {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

}  // namespace loopguard::testing
