#include "proxy/http/chunked_validator.h"

#include <gtest/gtest.h>

#include <string>

namespace loopguard::http {
namespace {

bool valid(const std::string& body, size_t split = std::string::npos) {
  ChunkedValidator v;
  if (split == std::string::npos) return v.feed(body.data(), body.size()) && v.done();
  return v.feed(body.data(), split) && v.feed(body.data() + split, body.size() - split) && v.done();
}

TEST(ChunkedValidator, AcceptsWellFormedBodies) {
  EXPECT_TRUE(valid("0\r\n\r\n"));
  EXPECT_TRUE(valid("5\r\nhello\r\n0\r\n\r\n"));
  EXPECT_TRUE(valid("5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"));
  std::string body = "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
  for (size_t split = 1; split < body.size(); ++split) EXPECT_TRUE(valid(body, split)) << split;
}

TEST(ChunkedValidator, RejectsBadFraming) {
  EXPECT_FALSE(valid("5\r\nhelloXX0\r\n\r\n"));  // data not followed by CRLF
  EXPECT_FALSE(valid("5\nhello\r\n0\r\n\r\n"));   // bare LF after size
  EXPECT_FALSE(valid("zz\r\n"));
  EXPECT_FALSE(valid("\r\n"));                    // no digits
  EXPECT_FALSE(valid("fffffffffffffffff\r\n"));   // 17 digits
  EXPECT_FALSE(valid("5\r\nhello\n0\r\n\r\n"));
  EXPECT_FALSE(valid("0\r\n\n"));
  EXPECT_FALSE(valid("0\r\nX: 1\n\r\n"));
  EXPECT_FALSE(valid("5 \r\nhello\r\n0\r\n\r\n"));
}

TEST(ChunkedValidator, IncompleteIsNotDone) {
  ChunkedValidator v;
  std::string part = "5\r\nhel";
  EXPECT_TRUE(v.feed(part.data(), part.size()));
  EXPECT_FALSE(v.done());
}

}  // namespace
}  // namespace loopguard::http
