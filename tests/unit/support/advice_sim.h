// A single-threaded event loop, simulated: the ground truth the advisor's statistics are tested
// against. Requests arrive as Poisson streams (or paced); an endpoint either computes on the
// loop for cpu_ms (a blocker), or needs the loop for a moment to parse, waits wait_ms off the
// loop (a sleep, a DB, a thread that releases the GIL), then needs the loop for a moment to
// answer. The loop serves whatever became ready first. Optional stalls nobody caused (a GC, the
// CPU taken away) at random times. Its output is what a proxy sees: completions in head order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <queue>
#include <random>
#include <vector>

#include "proxy/advice/completion.h"

namespace loopguard::advice::sim {

struct Endpoint {
  EndpointId id = 0;
  double rate_per_s = 10;
  double cpu_ms = 0;   // > 0: computes on the loop this long
  double wait_ms = 0;  // otherwise: waits this long off the loop
  bool paced = false;  // strictly periodic arrivals instead of Poisson
};

struct Options {
  double duration_s = 30;
  double stall_rate_per_s = 0;  // stalls nobody caused
  double stall_ms = 10;
  uint32_t seed = 1;
};

struct Probe {
  int64_t sent_ns;
  int64_t head_ns;
};

inline std::vector<Completion> simulate(const std::vector<Endpoint>& endpoints, const Options& o,
                                        std::vector<int64_t> probe_times_ns = {},
                                        std::vector<Probe>* probes = nullptr) {
  constexpr double kParseMs = 0.05, kAnswerMs = 0.1, kNetworkMs = 0.05;
  struct Item {
    double ready_ms;
    double work_ms;
    int request;  // -1: a stall; -2 - k: probe k
    bool last;    // finishing this completes the request
    bool operator>(const Item& b) const { return ready_ms > b.ready_ms; }
  };
  std::mt19937 rng(o.seed);
  struct Req {
    double sent_ms;
    const Endpoint* e;
    double head_ms = -1;
  };
  std::vector<Req> reqs;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> ready;
  for (const Endpoint& e : endpoints) {
    std::exponential_distribution<double> gap(e.rate_per_s / 1000.0);
    std::uniform_real_distribution<double> phase(0, 1000.0 / e.rate_per_s);
    for (double t = e.paced ? phase(rng) : gap(rng); t < o.duration_s * 1000;
         t += e.paced ? 1000.0 / e.rate_per_s : gap(rng)) {
      const int id = static_cast<int>(reqs.size());
      reqs.push_back(Req{t, &e});
      if (e.cpu_ms > 0) {
        ready.push(Item{t + kNetworkMs, e.cpu_ms, id, true});
      } else {
        ready.push(Item{t + kNetworkMs, kParseMs, id, false});
      }
    }
  }
  if (o.stall_rate_per_s > 0) {
    std::exponential_distribution<double> gap(o.stall_rate_per_s / 1000.0);
    for (double t = gap(rng); t < o.duration_s * 1000; t += gap(rng)) {
      ready.push(Item{t, o.stall_ms, -1, false});
    }
  }
  for (size_t k = 0; k < probe_times_ns.size(); ++k) {
    ready.push(Item{static_cast<double>(probe_times_ns[k]) / 1e6 + kNetworkMs, kAnswerMs,
                    -2 - static_cast<int>(k), true});
  }
  if (probes != nullptr) probes->assign(probe_times_ns.size(), Probe{0, 0});
  double free_at = 0;
  while (!ready.empty()) {
    Item it = ready.top();
    ready.pop();
    const double start = std::max(it.ready_ms, free_at);
    free_at = start + it.work_ms;
    if (it.request <= -2) {
      const size_t k = static_cast<size_t>(-2 - it.request);
      if (probes != nullptr) {
        (*probes)[k] = Probe{probe_times_ns[k], static_cast<int64_t>((free_at + kNetworkMs) * 1e6)};
      }
      continue;
    }
    if (it.request < 0) continue;
    Req& r = reqs[static_cast<size_t>(it.request)];
    if (it.last) {
      r.head_ms = free_at + kNetworkMs;
    } else {
      ready.push(Item{free_at + r.e->wait_ms, kAnswerMs, it.request, true});
    }
  }
  std::vector<Completion> out;
  for (const Req& r : reqs) {
    out.push_back(Completion{static_cast<int64_t>(r.sent_ms * 1e6),
                             static_cast<int64_t>(r.head_ms * 1e6), r.e->id, true, false});
  }
  std::sort(out.begin(), out.end(),
            [](const Completion& a, const Completion& b) { return a.head_ns < b.head_ns; });
  // Another request in flight at each head: one sent before it that completes after it.
  std::vector<int64_t> sends;
  for (const Completion& c : out) sends.push_back(c.sent_ns);
  std::sort(sends.begin(), sends.end());
  for (size_t i = 0; i < out.size(); ++i) {
    // Sent before my head, minus those completed before (or at) my head, minus me.
    const auto sent_before = std::upper_bound(sends.begin(), sends.end(), out[i].head_ns) - sends.begin();
    out[i].others_in_flight = static_cast<int64_t>(sent_before) - static_cast<int64_t>(i + 1) > 0;
  }
  return out;
}

}  // namespace loopguard::advice::sim
