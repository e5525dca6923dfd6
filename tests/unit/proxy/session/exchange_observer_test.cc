// The snapshot's list of exchange listeners: each event reaches every registered observer, in
// the order they were added, with the request's record; the list is bounded and never grows
// per request.
#include "proxy/session/exchange_observer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace loopguard::proxy {
namespace {

class Recorder final : public ExchangeObserver {
 public:
  Recorder(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  void onUpstreamAttached(ExchangeRecord& r, upstream::Lease&) override {
    note("attached", r);
  }
  void onRequestSent(ExchangeRecord& r, upstream::Lease&) override { note("sent", r); }
  void onAttemptEnded(ExchangeRecord& r, routing::SampleOutcome outcome) override {
    note(outcome == routing::SampleOutcome::Ok ? "ended-ok" : "ended-drop", r);
  }
  void onResponseHead(ExchangeRecord& r, bool streamed) override {
    note(streamed ? "head-streamed" : "head", r);
  }
  void onFinished(ExchangeRecord& r) override { note("finished", r); }

 private:
  void note(const char* event, const ExchangeRecord& r) {
    log_.push_back(name_ + ":" + event + ":" + r.request_id);
  }
  std::string name_;
  std::vector<std::string>& log_;
};

TEST(ExchangeObservers, EveryEventReachesEachObserverInRegistrationOrder) {
  std::vector<std::string> log;
  Recorder first("a", log), second("b", log);
  ExchangeObservers observers;
  ASSERT_TRUE(observers.add(&first));
  ASSERT_TRUE(observers.add(&second));
  ExchangeRecord record;
  record.request_id = "r1";
  // (The events that carry an upstream connection are checked through a real relay in
  // exchange_events_test.cc.)
  observers.attemptEnded(record, routing::SampleOutcome::Ok);
  observers.responseHead(record, true);
  observers.finished(record);
  std::vector<std::string> want = {"a:ended-ok:r1",      "b:ended-ok:r1", "a:head-streamed:r1",
                                   "b:head-streamed:r1", "a:finished:r1", "b:finished:r1"};
  EXPECT_EQ(log, want);
}

TEST(ExchangeObservers, AnEmptyListEmitsNothingAndAFullOneRefusesMore) {
  ExchangeObservers observers;
  ExchangeRecord record;
  observers.finished(record);  // no observer: nothing to call
  EXPECT_EQ(observers.size(), 0u);
  EXPECT_FALSE(observers.add(nullptr));
  std::vector<std::string> log;
  std::vector<std::unique_ptr<Recorder>> recorders;
  for (size_t i = 0; i < ExchangeObservers::kCapacity; ++i) {
    recorders.push_back(std::make_unique<Recorder>(std::to_string(i), log));
    EXPECT_TRUE(observers.add(recorders.back().get()));
  }
  Recorder extra("extra", log);
  EXPECT_FALSE(observers.add(&extra));
  observers.finished(record);
  EXPECT_EQ(log.size(), ExchangeObservers::kCapacity);
}

TEST(ExchangeRecord, ClearKeepsTheStringsCapacity) {
  ExchangeRecord record;
  record.request_id.assign(64, 'x');
  record.status = 502;
  record.advice_ticket = 7;
  size_t capacity = record.request_id.capacity();
  record.clear();
  EXPECT_TRUE(record.request_id.empty());
  EXPECT_EQ(record.request_id.capacity(), capacity);
  EXPECT_EQ(record.status, 0);
  EXPECT_EQ(record.advice_ticket, 0u);
}

}  // namespace
}  // namespace loopguard::proxy
