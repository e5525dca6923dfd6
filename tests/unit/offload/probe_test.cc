// A worker's readiness Probe on a private loop, against a loopback listener standing in for the
// worker: the probe lives in its ProbeSet until its socket's close callback, whether its worker
// heard the result or cancelled it first (a worker that is gone), and the loop closes clean.
#include "offload/probe.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/support/loop_runner.h"
#include "tests/unit/support/loopback_server.h"

namespace loopguard::offload {
namespace {

using loopguard::testing::LoopbackServer;
using loopguard::testing::runUntil;

struct FakeWorker final : ProbeOwner {
  explicit FakeWorker(const ProbeSet& s) : probes(s) {}
  void onProbeResult(bool r, const std::string& d) override {
    ++results;
    ready = r;
    detail = d;
    held_at_result = probes.size();
  }
  const ProbeSet& probes;
  size_t held_at_result = 0;
  int results = 0;
  bool ready = false;
  std::string detail;
};

struct ProbeTest : ::testing::Test {
  ProbeTest() : app(loop.get(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") {}
  WorkerAddress address() const {
    WorkerAddress a;
    a.is_unix = false;
    a.port = static_cast<uint16_t>(app.port());
    return a;
  }

  uv::Loop loop;
  net::BufferPool buffers{4};
  ProbeSet probes;  // after buffers: a probe's socket gives its blocks back to them
  LoopbackServer app;
};

TEST_F(ProbeTest, AProbeThatAnsweredLeavesItsSetFromItsCloseCallback) {
  FakeWorker worker(probes);
  Probe::start(probes, loop.get(), buffers, address(), std::nullopt, 2'000, worker);
  EXPECT_EQ(worker.results, 0);  // never from inside start()
  EXPECT_EQ(probes.size(), 1u);
  ASSERT_TRUE(runUntil(loop, [&] { return worker.results == 1; }));
  EXPECT_TRUE(worker.ready) << worker.detail;
  EXPECT_EQ(worker.held_at_result, 1u) << "closing: held until its close callback";
  ASSERT_TRUE(runUntil(loop, [&] { return probes.empty(); }));
  app.close();
  EXPECT_EQ(loop.close(), 0);
}

TEST_F(ProbeTest, AProbeCancelledByAWorkerThatIsGoneStillClosesOutOfItsSet) {
  {
    FakeWorker worker(probes);
    Probe& p = Probe::start(probes, loop.get(), buffers, address(), std::string("/ready"), 2'000,
                            worker);
    p.cancel();  // the worker goes away now; the probe must not call it again
  }
  ASSERT_TRUE(runUntil(loop, [&] { return probes.empty(); }));
  app.close();
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::offload
