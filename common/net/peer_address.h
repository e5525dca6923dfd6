// A peer's IP address in binary: 17 bytes, so that a connection can keep it while idle (a
// std::string costs 32), and made into text only where text is wanted: once per request.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace loopguard::net {

struct PeerAddress {
  uint8_t family = AF_UNSPEC;  // AF_INET, AF_INET6, or unspecified (a unix socket, unknown)
  uint8_t bytes[16] = {};

  static PeerAddress of(const sockaddr* addr) {
    PeerAddress a;
    if (addr->sa_family == AF_INET) {
      a.family = AF_INET;
      std::memcpy(a.bytes, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, 4);
    } else if (addr->sa_family == AF_INET6) {
      a.family = AF_INET6;
      std::memcpy(a.bytes, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, 16);
    }
    return a;
  }
  // "1.2.3.4" / "::1"; empty when unspecified. IPv4 by hand: glibc's inet_ntop formats it with
  // sprintf, a visible cost when it runs for every request.
  void format(std::string& out) const {
    if (family == AF_INET) {
      char text[16];
      char* p = text;
      for (int i = 0; i < 4; ++i) {
        unsigned v = bytes[i];
        if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
        if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
        *p++ = static_cast<char>('0' + v % 10);
        if (i < 3) *p++ = '.';
      }
      out.assign(text, static_cast<size_t>(p - text));
      return;
    }
    char text[INET6_ADDRSTRLEN];
    if (family == AF_UNSPEC || inet_ntop(family, bytes, text, sizeof(text)) == nullptr) {
      out.clear();
      return;
    }
    out.assign(text);
  }
};

}  // namespace loopguard::net
