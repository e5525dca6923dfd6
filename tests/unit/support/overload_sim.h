// A discrete-event simulation for the adaptive limit's unit tests, on a fake clock in
// microseconds: open-loop arrivals -> one route's Limiter (its gate an AdaptiveLimit) -> an app
// with `capacity` requests served in parallel and a FIFO queue of its own (a DB pool, or a
// single-threaded CPU handler at capacity 1). Completions feed the route's RouteLatency exactly
// as the request path does, and the AdaptiveLimit adapts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/routing/adaptive_limit.h"
#include "proxy/routing/limiter.h"
#include "proxy/routing/route_latency.h"

namespace loopguard::routing::sim {

struct AppModel {
  uint32_t capacity = 1;
  uint64_t service_us = 20'000;
};

class OverloadSim {
 public:
  OverloadSim(AppModel app, config::RouteLimits limits, double rate_per_s)
      : app_(app),
        rate_(rate_per_s),
        route_clock_(this),
        group_clock_(this),
        group_("app", group_clock_),
        limiter_(std::make_shared<Limiter>(limits, route_clock_, &group_)) {
    group_.addRoute("r", limiter_, limits);
  }
  ~OverloadSim() {
    for (Request& r : requests_) limiter_->cancel(r);
  }

  void setApp(AppModel app) { app_ = app; }
  void setRate(double rate_per_s) { rate_ = rate_per_s; }

  // Runs `ms` more of simulated time; the limit is sampled every 100 ms into limits().
  void runFor(uint64_t ms) {
    const uint64_t end = now_us_ + ms * 1000;
    if (!next_arrival_us_) next_arrival_us_ = now_us_;
    for (;;) {
      uint64_t next = end;
      int kind = 0;  // 0 end, 1 arrival, 2 completion, 3 route timer, 4 group timer, 5 sample
      auto consider = [&](std::optional<uint64_t> at, int k) {
        if (at && *at < next) {
          next = *at;
          kind = k;
        }
      };
      if (rate_ > 0) consider(next_arrival_us_, 1);
      if (!completions_.empty()) consider(completions_.begin()->first, 2);
      if (route_clock_.armed_) consider(*route_clock_.armed_ * 1000, 3);
      if (group_clock_.armed_) consider(*group_clock_.armed_ * 1000, 4);
      consider(next_sample_us_, 5);
      // The later steps the limiter asked for come first, at the same instant, as the loop's
      // ready queue runs before the loop sleeps again.
      if (route_clock_.posted_) {
        route_clock_.posted_ = false;
        limiter_->deliver();
        continue;
      }
      now_us_ = std::max(now_us_, next);
      if (kind == 0) return;
      switch (kind) {
        case 1:
          arrive();
          *next_arrival_us_ += static_cast<uint64_t>(1e6 / rate_);
          break;
        case 2: {
          Request* r = completions_.begin()->second;
          completions_.erase(completions_.begin());
          complete(*r);
          break;
        }
        case 3:
          route_clock_.armed_.reset();
          limiter_->onTimer();
          break;
        case 4:
          group_clock_.armed_.reset();
          group_.onTimer();
          break;
        case 5:
          limits_.push_back(group_.limit());
          in_app_.push_back(busy_ + app_queue_.size());
          next_sample_us_ += 100'000;
          break;
      }
    }
  }

  // Observations.
  const std::vector<uint64_t>& limits() const { return limits_; }  // every 100 ms
  const std::vector<uint64_t>& inApp() const { return in_app_; }   // requests in the app
  uint64_t served() const { return served_; }
  uint64_t refused() const { return refused_; }
  // Served requests' latency (arrival to response) in ms, since the last resetCounts().
  const std::vector<double>& servedMs() const { return served_ms_; }
  void resetCounts() {
    served_ = refused_ = 0;
    served_ms_.clear();
  }
  AdaptiveLimit& group() { return group_; }
  Limiter& limiter() { return *limiter_; }
  const RouteLatency& latency() const { return latency_; }

 private:
  class Clock : public LimiterClock {
   public:
    explicit Clock(OverloadSim* sim) : sim_(sim) {}
    TimePointMs now() const override { return sim_->now_us_ / 1000; }
    void arm(TimePointMs deadline) override { armed_ = deadline; }
    void disarm() override { armed_.reset(); }
    void post() override { posted_ = true; }
    std::optional<TimePointMs> armed_;
    bool posted_ = false;  // a later step is due: runs before time moves on

   private:
    OverloadSim* sim_;
  };

  struct Request final : LimiterWaiter {
    Request(OverloadSim* s, uint64_t at) : sim(s), arrived_us(at) {}
    void onAdmitted() override { sim->send(*this); }
    void onQueueTimeout() override { ++sim->refused_; }
    void onEvicted() override { ++sim->refused_; }
    OverloadSim* sim;
    uint64_t arrived_us;
    uint64_t sent_us = 0;
  };

  void arrive() {
    Request& r = requests_.emplace_back(this, now_us_);
    switch (limiter_->admit(r)) {
      case Admission::Admitted:
        send(r);
        break;
      case Admission::Queued:
        break;
      case Admission::QueueFull:
        ++refused_;
        break;
    }
  }

  void send(Request& r) {
    r.sent_us = now_us_;
    if (busy_ < app_.capacity) {
      start(r);
    } else {
      app_queue_.push_back(&r);
    }
  }

  void start(Request& r) {
    ++busy_;
    // +-10% of deterministic jitter, so that no two windows are identical.
    jitter_ = jitter_ * 6364136223846793005ULL + 1442695040888963407ULL;
    double factor = 0.9 + 0.2 * static_cast<double>(jitter_ >> 40) / static_cast<double>(1 << 24);
    completions_.emplace(now_us_ + static_cast<uint64_t>(app_.service_us * factor), &r);
  }

  void complete(Request& r) {
    --busy_;
    if (!app_queue_.empty()) {
      Request* next = app_queue_.front();
      app_queue_.pop_front();
      start(*next);
    }
    ++served_;
    served_ms_.push_back(static_cast<double>(now_us_ - r.arrived_us) / 1000.0);
    if (latency_.add("app:1", now_us_ - r.sent_us, SampleOutcome::Ok, now_us_ / 1000)) {
      limiter_->setServiceTime(*latency_.p50Ms(), *latency_.p90Ms());
      group_.onRouteWindow("r", latency_.lastWindow());
    }
    limiter_->release();
  }

  AppModel app_;
  double rate_;
  uint64_t now_us_ = 1'000'000;
  std::optional<uint64_t> next_arrival_us_;
  uint64_t next_sample_us_ = 1'000'000;
  Clock route_clock_;
  Clock group_clock_;
  AdaptiveLimit group_;
  std::shared_ptr<Limiter> limiter_;
  RouteLatency latency_;
  std::deque<Request> requests_;  // stable addresses; never shrinks (a test is short)
  std::deque<Request*> app_queue_;
  std::multimap<uint64_t, Request*> completions_;
  uint32_t busy_ = 0;
  uint64_t served_ = 0;
  uint64_t refused_ = 0;
  std::vector<double> served_ms_;
  std::vector<uint64_t> limits_;
  std::vector<uint64_t> in_app_;
  uint64_t jitter_ = 42;
};

}  // namespace loopguard::routing::sim
