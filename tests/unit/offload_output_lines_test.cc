#include "offload/output_lines.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loopguard::offload {
namespace {

struct Collect {
  std::vector<std::string> lines;
  OutputLines out{[this](std::string_view l) { lines.emplace_back(l); }};
};

TEST(OutputLines, SplitsOnNewlinesAcrossReads) {
  Collect c;
  c.out.feed("hel");
  c.out.feed("lo\nwor");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"hello"}));
  c.out.feed("ld\r\n\nlast");
  EXPECT_EQ(c.lines, (std::vector<std::string>{"hello", "world", ""}));
  c.out.finish();
  EXPECT_EQ(c.lines.back(), "last");
}

TEST(OutputLines, ALineWithoutNewlineIsCutIntoBoundedPieces) {
  Collect c;
  std::string big(OutputLines::kMaxLine * 2 + 10, 'x');
  for (size_t i = 0; i < big.size(); i += 1000) c.out.feed(std::string_view(big).substr(i, 1000));
  ASSERT_EQ(c.lines.size(), 2u);
  EXPECT_EQ(c.lines[0].size(), OutputLines::kMaxLine);
  EXPECT_EQ(c.lines[1].size(), OutputLines::kMaxLine);
  c.out.feed("\n");
  ASSERT_EQ(c.lines.size(), 3u);
  EXPECT_EQ(c.lines[2].size(), 10u);
}

TEST(OutputLines, KeepsTheLastFewLines) {
  Collect c;
  for (int i = 0; i < 20; ++i) c.out.feed("line " + std::to_string(i) + "\n");
  ASSERT_EQ(c.out.last().size(), OutputLines::kKeepLines);
  EXPECT_EQ(c.out.last().back(), "line 19");
  EXPECT_EQ(c.out.last().front(), "line " + std::to_string(20 - OutputLines::kKeepLines));
}

TEST(OutputLines, FinishWithNothingPendingEmitsNothing) {
  Collect c;
  c.out.feed("a\n");
  c.out.finish();
  EXPECT_EQ(c.lines.size(), 1u);
}

}  // namespace
}  // namespace loopguard::offload
