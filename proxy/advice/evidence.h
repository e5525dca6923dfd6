// Sums what the process streams saw of one endpoint into its Evidence (the Advisor does this
// once a second; the replay benchmark does it on recorded traces). Pure.
#pragma once

#include <cstdint>
#include <vector>

#include "proxy/advice/process_stream.h"
#include "proxy/advice/verdict.h"

namespace loopguard::advice {

// S3's background on one stream: the (request, probe) pairs of the endpoints that do not look
// like blockers (under s3_min_probes_blocks pairs, or lagging under s3_blocks of them). Not all
// probes: probes go out only while suspects are in flight, so once a blocker is the last
// suspect, nearly every probe is sent during its requests and lags, and "all probes" is that
// blocker itself.
struct ProbePool {
  uint64_t probes = 0;
  uint64_t lagged = 0;
  std::vector<bool> quiet;  // by endpoint: counted in the pool
};

// One process stream and what its last settle() derived from it.
struct StreamView {
  const ProcessStream* stream = nullptr;
  const std::vector<double>* background = nullptr;  // by endpoint (backgroundRates)
  const ProbePool* probe_pool = nullptr;  // null: S3's background is every probe
};

ProbePool streamProbePool(const ProcessStream& stream, size_t endpoints, const VerdictParams& params);

// The background blame rate of every endpoint (0..endpoints-1) of one stream.
std::vector<double> streamBackground(const ProcessStream& stream, size_t endpoints,
                                     const VerdictParams& params);

// `processes` (optional) gets how many streams served the endpoint.
Evidence gatherEvidence(const std::vector<StreamView>& streams, EndpointId endpoint, int64_t now_ns,
                        bool probing, uint32_t* processes = nullptr);

}  // namespace loopguard::advice
