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

TEST(LineBudget, ABurstThenTenLinesPerSecond) {
  LineBudget b;
  int taken = 0;
  for (int i = 0; i < 100; ++i) taken += b.take(1000) ? 1 : 0;
  EXPECT_EQ(taken, 50);
  EXPECT_EQ(b.takeRefused(), 50u);
  EXPECT_EQ(b.takeRefused(), 0u);
  EXPECT_FALSE(b.take(1050));  // 0.5 token back
  EXPECT_TRUE(b.take(1150));   // 1.5 tokens
  EXPECT_FALSE(b.take(1150));
  taken = 0;
  for (int i = 0; i < 100; ++i) taken += b.take(60'000) ? 1 : 0;  // refilled, to the burst only
  EXPECT_EQ(taken, 50);
}

}  // namespace
}  // namespace loopguard::offload
