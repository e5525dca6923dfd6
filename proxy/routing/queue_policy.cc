#include "proxy/routing/queue_policy.h"

#include <algorithm>
#include <cmath>

namespace loopguard::routing {

using config::QueueOrder;

void QueuePolicy::setOrder(QueueOrder order) {
  order_ = order;
  if (order_ == QueueOrder::Fifo) lifo_ = false;
}

void QueuePolicy::setServiceTime(double p50_ms, double p90_ms) {
  target_ms_ = std::max(kMinTargetMs, kTargetPerP50 * p50_ms);
  interval_ms_ = std::max(kMinIntervalMs, kIntervalPerP90 * p90_ms);
}

TimePointMs QueuePolicy::targetMs() const {
  return static_cast<TimePointMs>(std::ceil(target_ms_.value_or(kMinTargetMs)));
}

TimePointMs QueuePolicy::intervalMs() const {
  return static_cast<TimePointMs>(std::ceil(interval_ms_.value_or(kMinIntervalMs)));
}

void QueuePolicy::onQueueNonEmpty(TimePointMs now) {
  if (!non_empty_since_) non_empty_since_ = now;
}

void QueuePolicy::onQueueEmpty() {
  non_empty_since_.reset();
  lifo_ = false;
}

bool QueuePolicy::standing(TimePointMs now) const {
  return non_empty_since_ && now - *non_empty_since_ >= intervalMs();
}

std::optional<TimePointMs> QueuePolicy::standsAt() const {
  if (!non_empty_since_) return std::nullopt;
  return *non_empty_since_ + intervalMs();
}

bool QueuePolicy::lifoAt(TimePointMs now, uint64_t depth, uint64_t max_queue) const {
  switch (order_) {
    case QueueOrder::Fifo:
      return false;
    case QueueOrder::Lifo:
      return true;
    case QueueOrder::Adaptive:
      return standing(now) ||
             static_cast<double>(depth) > kLifoDepthShare * static_cast<double>(max_queue);
  }
  return false;
}

bool QueuePolicy::newestFirst(TimePointMs now, uint64_t depth, uint64_t max_queue) {
  bool lifo = lifoAt(now, depth, max_queue);
  if (lifo && !lifo_) ++lifo_switches_;
  lifo_ = lifo;
  return lifo;
}

bool QueuePolicy::evictsOldest(TimePointMs now, uint64_t depth, uint64_t max_queue) const {
  return lifoAt(now, depth, max_queue);
}

bool QueuePolicy::earlyRefusalPossible() const {
  return order_ == QueueOrder::Adaptive && target_ms_.has_value();
}

std::optional<TimePointMs> QueuePolicy::earlyDeadline(TimePointMs enqueued_at,
                                                      TimePointMs now) const {
  if (!earlyRefusalPossible() || !standing(now)) return std::nullopt;
  return enqueued_at + targetMs();
}

}  // namespace loopguard::routing
