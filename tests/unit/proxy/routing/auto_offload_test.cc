#include "proxy/routing/auto_offload.h"

#include <gtest/gtest.h>

namespace loopguard::routing {
namespace {

using Rule = AutoOffload::Rule;

BlockingVerdict blocker(std::string path, uint64_t samples = 40, double confidence = 0.99,
                        std::string route = "app") {
  return BlockingVerdict{std::move(route), "GET", std::move(path), samples, confidence, 12.0, 0.3};
}

class AutoOffloadTest : public ::testing::Test {
 protected:
  void SetUp() override { decisions.configure({rule}, 30); }
  // One review per second, as the driver does; returns what moved at the last one.
  std::vector<MovedEndpoint> reviewFor(int64_t seconds, const std::vector<BlockingVerdict>& v) {
    std::vector<MovedEndpoint> moved;
    for (int64_t i = 0; i < seconds; ++i) {
      now += 1000;
      auto m = decisions.review(decisions.rules()[0], v, now, 1'700'000'000'000 + now);
      moved.insert(moved.end(), m.begin(), m.end());
    }
    return moved;
  }

  Rule rule{"app", "app", "cpu", 0.95};
  AutoOffload decisions;
  int64_t now = 0;
};

TEST_F(AutoOffloadTest, MovesAfterTheVerdictHoldsForTheConfirmationTime) {
  EXPECT_TRUE(reviewFor(2, {blocker("/cpu/{}")}).empty());  // 0 ms then 1000 ms held
  EXPECT_FALSE(decisions.moved("app", "GET", "/cpu/42?x=1"));
  std::vector<MovedEndpoint> moved = reviewFor(1, {blocker("/cpu/{}")});
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(moved[0].path, "/cpu/{}");
  EXPECT_EQ(moved[0].pool, "cpu");
  EXPECT_EQ(moved[0].verdict.samples, 40u);
  EXPECT_EQ(moved[0].since_ms, 1'700'000'000'000 + now);
  // Any path of the template, any query; not another method, route or path.
  EXPECT_TRUE(decisions.moved("app", "GET", "/cpu/42?x=1"));
  EXPECT_TRUE(decisions.moved("app", "GET", "/cpu/7"));
  EXPECT_FALSE(decisions.moved("app", "POST", "/cpu/7"));
  EXPECT_FALSE(decisions.moved("other", "GET", "/cpu/7"));
  EXPECT_FALSE(decisions.moved("app", "GET", "/io/7"));
  EXPECT_EQ(decisions.movedCount("app"), 1u);
  // Logged once: later reviews do not move it again.
  EXPECT_TRUE(reviewFor(3, {blocker("/cpu/{}")}).empty());
}

TEST_F(AutoOffloadTest, StickyOnceMoved) {
  reviewFor(3, {blocker("/cpu")});
  ASSERT_TRUE(decisions.moved("app", "GET", "/cpu"));
  // The advisor no longer sees it blocking (it is not observed any more): still moved.
  reviewFor(5, {});
  EXPECT_TRUE(decisions.moved("app", "GET", "/cpu"));
}

TEST_F(AutoOffloadTest, ABreakInTheVerdictStartsTheConfirmationOver) {
  reviewFor(2, {blocker("/cpu")});
  reviewFor(1, {});
  EXPECT_TRUE(reviewFor(2, {blocker("/cpu")}).empty());
  EXPECT_EQ(reviewFor(1, {blocker("/cpu")}).size(), 1u);
}

TEST_F(AutoOffloadTest, GuardRails) {
  std::vector<BlockingVerdict> v = {
      blocker("/few", 29),                  // fewer than min_samples
      blocker("/unsure", 100, 0.949),       // below min_confidence
      blocker("{other}"),                   // many endpoints in one bucket
      blocker("/elsewhere", 100, 1.0, "b"),  // another route's endpoint
  };
  EXPECT_TRUE(reviewFor(10, v).empty());
  EXPECT_EQ(decisions.movedCount("app"), 0u);
  EXPECT_FALSE(decisions.moved("app", "GET", "/few"));
}

TEST_F(AutoOffloadTest, KeptAcrossReconfigureForgottenByReset) {
  reviewFor(3, {blocker("/cpu")});
  Rule changed = rule;
  changed.pool = "bigger";
  changed.min_confidence = 0.99;
  decisions.configure({changed}, 50);
  EXPECT_TRUE(decisions.moved("app", "GET", "/cpu"));
  ASSERT_NE(decisions.find("app", "GET", "/cpu"), nullptr);
  EXPECT_EQ(decisions.find("app", "GET", "/cpu")->pool, "bigger");
  EXPECT_EQ(decisions.reset(), 1u);
  EXPECT_FALSE(decisions.moved("app", "GET", "/cpu"));
  EXPECT_EQ(decisions.movedCount("app"), 0u);
}

TEST_F(AutoOffloadTest, ARouteThatLosesAutoOffloadLosesItsMoves) {
  reviewFor(3, {blocker("/cpu")});
  decisions.configure({}, 30);
  EXPECT_FALSE(decisions.moved("app", "GET", "/cpu"));
  decisions.configure({rule}, 30);
  EXPECT_FALSE(decisions.moved("app", "GET", "/cpu"));  // not resurrected
  EXPECT_TRUE(decisions.movedEndpoints().empty());
}

}  // namespace
}  // namespace loopguard::routing
