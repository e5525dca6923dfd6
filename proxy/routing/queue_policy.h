// The order a route's queue is served in, and when a queued request is refused early. Pure logic
// the Limiter consults; it keeps the queue itself.
//
//   fifo      oldest first; a waiter is refused at its queue_timeout; a full queue refuses the
//             newcomer.
//   lifo      newest first; a full queue evicts its oldest waiter (503 queue_evicted) to take the
//             newcomer (ASP.NET's StackPolicy): under overload the newest requests are the ones
//             whose clients still wait, and the oldest would be refused at queue_timeout anyway.
//   adaptive  FIFO while the queue drains; once a queue *stands* (it has not been empty for a
//             whole `interval`, Facebook's rule) or is 80% full (HBase's), LIFO, and CoDel-style
//             early refusal: a waiter may then wait at most `target`, and one already past it is
//             refused at once (503 queue_timeout). Back to FIFO when the queue empties.
//
// target and interval scale with the route's upstream time (RouteLatency's smoothed p50/p90):
// Facebook's 5 ms / 100 ms suit millisecond RPCs, but with a 20 ms handler one queued request
// already waits 20 ms. Until the route has a latency estimate there is no early refusal (the
// order still switches). queue_timeout stays the hard cap in every order.
#pragma once

#include <cstdint>
#include <optional>

#include "config/config.h"
#include "proxy/routing/limiter_clock.h"

namespace loopguard::routing {

class QueuePolicy {
 public:
  // Floors of the scaled values (Facebook's defaults).
  static constexpr double kMinTargetMs = 5;
  static constexpr double kMinIntervalMs = 100;
  // target = max(5 ms, kTargetPerP50 x p50), interval = max(100 ms, kIntervalPerP90 x p90):
  // chosen by measurement (docs/limits.md, "Choosing target and interval").
  static constexpr double kTargetPerP50 = 2.0;
  static constexpr double kIntervalPerP90 = 4.0;
  // Adaptive turns LIFO above this share of max_queue even before the queue stands (HBase).
  static constexpr double kLifoDepthShare = 0.8;

  explicit QueuePolicy(config::QueueOrder order) : order_(order) {}

  void setOrder(config::QueueOrder order);
  config::QueueOrder order() const { return order_; }

  // The route's smoothed upstream time, in ms.
  void setServiceTime(double p50_ms, double p90_ms);
  bool hasServiceTime() const { return target_ms_.has_value(); }
  // The scaled values (the floors until a service time is known).
  TimePointMs targetMs() const;
  TimePointMs intervalMs() const;

  // The queue went from empty to non-empty, and back.
  void onQueueNonEmpty(TimePointMs now);
  void onQueueEmpty();

  // A queue stands: it has been non-empty, without a break, for at least `interval`.
  bool standing(TimePointMs now) const;
  // When the current queue will start to stand, if it does not empty first (for the timer).
  std::optional<TimePointMs> standsAt() const;

  // Serve the newest waiter next? Adaptive: while the queue stands or is kLifoDepthShare full.
  // Counts the switches to LIFO.
  bool newestFirst(TimePointMs now, uint64_t depth, uint64_t max_queue);
  // A full queue evicts its oldest waiter for the newcomer (instead of refusing the newcomer).
  bool evictsOldest(TimePointMs now, uint64_t depth, uint64_t max_queue) const;
  // Adaptive, a standing queue, a known service time: a waiter queued at `enqueued_at` must leave
  // by then. nullopt: only its queue_timeout applies.
  std::optional<TimePointMs> earlyDeadline(TimePointMs enqueued_at, TimePointMs now) const;
  // Whether early refusal can apply to the current queue at some point (arms the timer for
  // standsAt()).
  bool earlyRefusalPossible() const;

  bool lifoNow() const { return lifo_; }
  uint64_t lifoSwitches() const { return lifo_switches_; }

 private:
  bool lifoAt(TimePointMs now, uint64_t depth, uint64_t max_queue) const;

  config::QueueOrder order_;
  std::optional<double> target_ms_;
  std::optional<double> interval_ms_;
  std::optional<TimePointMs> non_empty_since_;
  bool lifo_ = false;
  uint64_t lifo_switches_ = 0;
};

}  // namespace loopguard::routing
