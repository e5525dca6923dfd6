// Replays a trace of completions (LOOPGUARD_ADVICE_TRACE, one line per response:
// "group sent_ns head_ns others_in_flight streamed route method path") through the advisor's
// statistics and prints each endpoint's evidence and verdict; with --repeat N it replays N
// times and reports the statistics' CPU cost per observation. Used by tests/bench/advisor.sh
// and to try changes of the statistics on recorded traffic.
//
//   advisor_replay TRACE [--repeat N] [--no-swap] [--no-trailer] [--no-cpu] [--min-samples N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/advice/evidence.h"
#include "proxy/advice/process_stream.h"
#include "proxy/advice/verdict.h"

using namespace loopguard::advice;

namespace {

struct Record {
  int group;
  bool probe;
  bool sent_event;
  bool cpu;
  long long run_ns;
  long long wait_ns;
  Completion c;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: advisor_replay TRACE [--repeat N] [--no-swap] [--no-trailer] "
                 "[--min-samples N]\n";
    return 2;
  }
  StreamParams params;
  VerdictParams verdict;
  int repeat = 1;
  bool use_cpu = true;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--repeat") && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--no-swap")) {
      params.skip_held_head = false;
    } else if (!std::strcmp(argv[i], "--no-cpu")) {
      use_cpu = false;
    } else if (!std::strcmp(argv[i], "--no-trailer")) {
      params.trailer_ns = 0;
    } else if (!std::strcmp(argv[i], "--min-samples") && i + 1 < argc) {
      verdict.min_samples = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::cerr << "advisor_replay: unknown argument " << argv[i] << "\n";
      return 2;
    }
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << "advisor_replay: cannot read " << argv[1] << "\n";
    return 1;
  }
  std::map<std::string, EndpointId> ids;
  std::vector<std::string> names;
  std::vector<Record> records;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    Record r{};
    long long sent = 0, head = 0, others = 0;
    int streamed = 0;
    std::string route, method, path;
    if (!(f >> r.group >> sent >> head >> others >> streamed >> route >> method >> path)) continue;
    if (method == "CPU") {  // a loop-thread sample: time, cumulative run, cumulative wait
      r.cpu = true;
      r.c.sent_ns = sent;
      r.run_ns = head;
      r.wait_ns = others;
      records.push_back(r);
      continue;
    }
    if (route == "-" && method != "PROBESENT" && method != "PROBE") continue;  // not ours
    if (method == "PROBESENT" || method == "PROBE") {
      r.probe = true;
      r.sent_event = method == "PROBESENT";
      r.c.sent_ns = sent;
      r.c.head_ns = head;
      records.push_back(r);
      continue;
    }
    std::string key = route + " " + method + " " + path;
    auto [it, added] = ids.emplace(key, static_cast<EndpointId>(names.size()));
    if (added) names.push_back(key);
    r.c = Completion{sent, head, it->second, streamed == 0, others != 0};
    records.push_back(r);
  }
  if (records.empty()) {
    std::cerr << "advisor_replay: no records in " << argv[1] << "\n";
    return 1;
  }
  std::map<int, std::unique_ptr<ProcessStream>> streams;
  const auto t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < repeat; ++round) {
    streams.clear();
    for (const Record& r : records) {
      auto& s = streams[r.group];
      if (!s) s = std::make_unique<ProcessStream>(params);
      if (r.cpu) {
        if (use_cpu) s->cpuSample(r.c.sent_ns, r.run_ns, r.wait_ns);
      } else if (r.probe && r.sent_event) {
        s->probeSent(r.c.sent_ns);
      } else if (r.probe) {
        s->probeDone(r.c.head_ns);
      } else {
        s->add(r.c);
      }
    }
  }
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  int64_t end = 0;
  for (const Record& r : records) {
    if (!r.cpu) end = std::max(end, std::max(r.c.head_ns, r.c.sent_ns));
  }
  end += 10 * kNsPerMs;
  std::vector<std::vector<double>> backgrounds;
  backgrounds.reserve(streams.size());
  std::vector<StreamView> views;
  for (auto& [g, s] : streams) {
    s->settle(end);
    backgrounds.push_back(streamBackground(*s, names.size(), verdict));
    views.push_back(StreamView{s.get(), &backgrounds.back()});
  }
  std::printf("%zu records, %zu processes, %zu endpoints; statistics: %.0f ns per observation\n",
              records.size(), streams.size(), names.size(),
              ns / static_cast<double>(records.size() * static_cast<size_t>(repeat)));
  for (size_t e = 0; e < names.size(); ++e) {
    uint32_t processes = 0;
    Evidence ev = gatherEvidence(views, static_cast<EndpointId>(e), end, false, &processes);
    Verdict v = decide(ev, verdict);
    const double opp = static_cast<double>(ev.opportunities ? ev.opportunities : 1);
    std::printf("%-40s n=%5llu %-15s blk=%6.2f conf=%.3f | S1 %s r=%.3f bg=%.3f stall=%.1f base=%.1f"
                " | S2 %s %.2f/%.2f | S3 %s probes=%llu lagged=%.2f/%.2f\n",
                names[e].c_str(), static_cast<unsigned long long>(ev.samples), verdictName(v.kind),
                v.blocking_ms, v.confidence, opinionName(v.s1), static_cast<double>(ev.blamed) / opp,
                ev.expected_blamed / opp, ev.block_ms, ev.base_ms, opinionName(v.s2),
                ev.silence_n ? ev.silence_observed / static_cast<double>(ev.silence_n) : 0.0,
                ev.silence_n ? ev.silence_expected / static_cast<double>(ev.silence_n) : 0.0,
                opinionName(v.s3), static_cast<unsigned long long>(ev.probes),
                ev.probes ? static_cast<double>(ev.probes_lagged) / static_cast<double>(ev.probes) : 0.0,
                ev.all_probes ? static_cast<double>(ev.all_probes_lagged) / static_cast<double>(ev.all_probes) : 0.0);
  }
  return 0;
}
