#include "proxy/server/request_state.h"

#include <gtest/gtest.h>

#include "common/uv/loop.h"
#include "proxy/proxy_context.h"
#include "proxy/server/client_connection.h"
#include "tests/unit/support/loop_runner.h"

namespace loopguard::proxy {
namespace {

// A burst needs many states at once; once it is over, the states it left in the free list are
// freed by the next trim (all at once when no request is in progress, else those a whole
// period left unused), and a state that traffic keeps using is never freed.
TEST(RequestStatePool, TrimFreesOnlyWhatAWholePeriodLeftUnused) {
  uv::Loop loop;
  {
    ProxyContext context(loop.get());
    RequestStatePool pool(context);
    ConnectionSet set;
    ClientServices services{context, set, pool};
    ClientConnection& owner = set.open(services);

    // A burst while one request stays in progress (a long download, say).
    std::vector<RequestState*> burst;
    for (int i = 0; i < 5; ++i) burst.push_back(pool.take(owner, 8192));
    RequestState* long_one = burst[0];
    for (int i = 1; i < 5; ++i) pool.release(burst[i]);
    testing::step(loop);  // releases complete from the ready queue
    EXPECT_EQ(pool.trim(), 0u) << "the burst ran in this period: its states were wanted";
    EXPECT_FALSE(loop.takeHeapFreed()) << "nothing freed, nothing to give back";

    // Steady traffic of one request at a time through the next period.
    for (int i = 0; i < 3; ++i) {
      pool.release(pool.take(owner, 8192));
      testing::step(loop);
    }
    EXPECT_EQ(pool.trim(), 3u) << "three states stayed free all period; the fourth was used";
    EXPECT_TRUE(loop.takeHeapFreed()) << "the trim timer gives the pages back";
    EXPECT_EQ(pool.trim(), 1u) << "and the last one, once a period passes without a request";
    EXPECT_EQ(pool.trim(), 0u);
    pool.release(long_one);
    testing::step(loop);
    EXPECT_EQ(pool.trim(), 1u) << "nothing in progress: every free state goes";

    // A larger burst within one period, over by the next trim: no request is in progress, so
    // its states go at once, without waiting a whole period.
    const size_t big = 20;
    burst.clear();
    for (size_t i = 0; i < big; ++i) burst.push_back(pool.take(owner, 8192));
    for (RequestState* s : burst) pool.release(s);
    testing::step(loop);
    EXPECT_EQ(pool.trim(), big);

    // The same burst with one request still running at the trim: it may not be over.
    burst.clear();
    for (size_t i = 0; i < big; ++i) burst.push_back(pool.take(owner, 8192));
    for (size_t i = 1; i < big; ++i) pool.release(burst[i]);
    testing::step(loop);
    EXPECT_EQ(pool.trim(), 0u);
    pool.release(burst[0]);
    testing::step(loop);
    set.forEach([&](ClientConnection& c) { c.close(); });
    testing::step(loop);
  }
  EXPECT_EQ(loop.close(), 0);
}

}  // namespace
}  // namespace loopguard::proxy
