#include "proxy/advice/evidence.h"

#include <algorithm>
#include <cmath>

namespace loopguard::advice {

std::vector<double> streamBackground(const ProcessStream& stream, size_t endpoints,
                                     const VerdictParams& params) {
  std::vector<const FlushCounters*> counters(endpoints, nullptr);
  for (size_t e = 0; e < endpoints; ++e) counters[e] = stream.flush().counters(static_cast<EndpointId>(e));
  return backgroundRates(counters, params);
}

Evidence gatherEvidence(const std::vector<StreamView>& streams, EndpointId id, int64_t now_ns,
                        bool probing, uint32_t* processes) {
  Evidence ev;
  uint32_t served = 0;
  double victim_rate_sum = 0;
  std::vector<float> estimates;
  for (const StreamView& v : streams) {
    const ProcessStream& s = *v.stream;
    const FlushCounters* fc = s.flush().counters(id);
    if (fc == nullptr || fc->completions == 0) continue;
    ++served;
    ev.samples += fc->completions;
    ev.opportunities += fc->opportunities;
    ev.blamed += fc->blamed;
    ev.victims += fc->victims;
    victim_rate_sum += fc->victim_rate_sum;
    if (v.background != nullptr && id < v.background->size()) {
      ev.expected_blamed += static_cast<double>(fc->opportunities) * (*v.background)[id];
    }
    const size_t k = std::min<size_t>(fc->estimates, FlushCounters::kEstimates);
    estimates.insert(estimates.end(), fc->block_ms.begin(), fc->block_ms.begin() + k);
    if (const SilenceCounters* sc = s.silence().counters(id)) {
      ev.silence_n += sc->n;
      ev.silence_observed += sc->observed;
      ev.silence_expected += sc->expected;
      ev.silence_variance += sc->variance;
    }
    const int64_t base = s.baselineNs(id);
    if (base > 0) {
      const double ms = static_cast<double>(base) / kNsPerMs;
      ev.base_ms = ev.base_ms > 0 ? std::min(ev.base_ms, ms) : ms;
    }
    if (s.firstNs() >= 0) ev.process_s += static_cast<double>(now_ns - s.firstNs()) / 1e9;
    ev.all_probes += s.probes().probes();
    ev.all_probes_lagged += s.probes().lagged();
    if (const ProbeCounters* pc = s.probes().counters(id)) {
      ev.probes += pc->probes;
      ev.probes_lagged += pc->lagged;
      ev.probe_lag_ms += pc->lag_ms;
    }
  }
  if (ev.opportunities > 0) ev.victim_rate = victim_rate_sum / static_cast<double>(ev.opportunities);
  if (!estimates.empty()) {
    std::nth_element(estimates.begin(), estimates.begin() + estimates.size() / 2, estimates.end());
    ev.block_ms = estimates[estimates.size() / 2];
  }
  ev.probing = probing || ev.all_probes > 0;
  if (processes != nullptr) *processes = served;
  return ev;
}

}  // namespace loopguard::advice
