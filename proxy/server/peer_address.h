// A client's IP address as a connection keeps it while idle: 17 bytes instead of a 32-byte
// std::string. The text (for the access log and X-Forwarded-For) is made again for each request
// into the pooled request state: inet_ntop, no syscall.
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace loopguard::proxy {

struct PeerAddress {
  uint8_t family = AF_UNSPEC;  // AF_INET, AF_INET6, or unspecified (a unix socket)
  uint8_t bytes[16] = {};

  static PeerAddress parse(const std::string& text) {
    PeerAddress a;
    if (inet_pton(AF_INET, text.c_str(), a.bytes) == 1) {
      a.family = AF_INET;
    } else if (inet_pton(AF_INET6, text.c_str(), a.bytes) == 1) {
      a.family = AF_INET6;
    }
    return a;
  }
  // Empty for a unix socket, as Socket::peerIp says.
  void format(std::string& out) const {
    char text[INET6_ADDRSTRLEN];
    if (family == AF_UNSPEC || inet_ntop(family, bytes, text, sizeof(text)) == nullptr) {
      out.clear();
      return;
    }
    out.assign(text);
  }
};

}  // namespace loopguard::proxy
