// Sums what the process streams saw of one endpoint into its Evidence (the Advisor does this
// once a second; the replay benchmark does it on recorded traces). Pure.
#pragma once

#include <cstdint>
#include <vector>

#include "proxy/advice/process_stream.h"
#include "proxy/advice/verdict.h"

namespace loopguard::advice {

// One process stream and what its last settle() derived from it.
struct StreamView {
  const ProcessStream* stream = nullptr;
  const std::vector<double>* background = nullptr;  // by endpoint (backgroundRates)
};

// The background blame rate of every endpoint (0..endpoints-1) of one stream.
std::vector<double> streamBackground(const ProcessStream& stream, size_t endpoints,
                                     const VerdictParams& params);

// `processes` (optional) gets how many streams served the endpoint.
Evidence gatherEvidence(const std::vector<StreamView>& streams, EndpointId endpoint, int64_t now_ns,
                        bool probing, uint32_t* processes = nullptr);

}  // namespace loopguard::advice
