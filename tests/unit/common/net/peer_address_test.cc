// PeerAddress::format: IPv4 is formatted by hand (the per-request path), and must read exactly as
// inet_ntop writes it; IPv6 goes through inet_ntop; an unspecified address is empty.
#include "common/net/peer_address.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace loopguard::net {
namespace {

PeerAddress ipv4(uint32_t host_order) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(host_order);
  return PeerAddress::of(reinterpret_cast<const sockaddr*>(&sin));
}

std::string ntop(const PeerAddress& a) {
  char text[INET6_ADDRSTRLEN];
  return inet_ntop(a.family, a.bytes, text, sizeof(text));
}

TEST(PeerAddress, Ipv4ReadsAsInetNtopWritesIt) {
  std::string out;
  ipv4(0x7f000001).format(out);
  EXPECT_EQ(out, "127.0.0.1");
  ipv4(0).format(out);
  EXPECT_EQ(out, "0.0.0.0");
  ipv4(0xffffffff).format(out);
  EXPECT_EQ(out, "255.255.255.255");
  ipv4(0x0a006409).format(out);
  EXPECT_EQ(out, "10.0.100.9");
  // Every octet value in every position, and a spread of whole addresses.
  for (uint32_t v = 0; v < 256; ++v) {
    PeerAddress a = ipv4(v << 24 | v << 16 | (255 - v) << 8 | v);
    a.format(out);
    EXPECT_EQ(out, ntop(a));
  }
  std::mt19937 random(42);
  for (int i = 0; i < 10000; ++i) {
    PeerAddress a = ipv4(static_cast<uint32_t>(random()));
    a.format(out);
    ASSERT_EQ(out, ntop(a));
  }
}

TEST(PeerAddress, Ipv6GoesThroughInetNtopAndUnspecifiedIsEmpty) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  std::string out = "stale";
  PeerAddress::of(reinterpret_cast<const sockaddr*>(&sin6)).format(out);
  EXPECT_EQ(out, "::1");
  PeerAddress{}.format(out);
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace loopguard::net
