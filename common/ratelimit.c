/*
 * ratelimit: growing-interval complaints (see ratelimit.h).
 */
#include "common/ratelimit.h"
#include "common/clock.h"
#include "common/test.h"

#define RL_FIRST_NS (10 * CLOCK_NS_PER_S)
#define RL_MAX_NS (3600 * CLOCK_NS_PER_S)

bool
ratelimit_complain(struct ratelimit *rl)
{
    int64_t now = clock_mono_ns();

    if (!rl->failing) {
        rl->failing = true;
        rl->interval_ns = RL_FIRST_NS;
        rl->next_ns = now + rl->interval_ns;
        rl->suppressed = 0;
        return true;
    }
    if (now >= rl->next_ns) {
        rl->interval_ns *= 2;
        if (rl->interval_ns > RL_MAX_NS)
            rl->interval_ns = RL_MAX_NS;
        rl->next_ns = now + rl->interval_ns;
        return true;
    }
    rl->suppressed++;
    return false;
}

bool
ratelimit_release(struct ratelimit *rl)
{
    bool was = rl->failing;
    rl->failing = false;
    return was;
}

void
ratelimit_test(bool verbose)
{
    struct ratelimit rl = {0};
    assert(ratelimit_complain(&rl));
    assert(!ratelimit_complain(&rl));
    assert(!ratelimit_complain(&rl));
    assert(rl.suppressed == 2);
    assert(ratelimit_release(&rl));
    assert(!ratelimit_release(&rl));
    assert(ratelimit_complain(&rl));
    (void)verbose;
    TEST_OK("ratelimit");
}
