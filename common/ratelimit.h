/*
 * ratelimit: complain once, then at a growing interval (collectd's
 * c_complain/c_release). One struct per failure condition.
 */
#ifndef SP_RATELIMIT_H
#define SP_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    int64_t next_ns;     /* monotonic time of the next allowed complaint */
    int64_t interval_ns; /* current interval; doubles up to 1 hour */
    uint64_t suppressed; /* complaints swallowed since the last one */
    bool failing;        /* inside a failure episode */
};

/* True when the caller should log now (first failure, or interval past). */
bool ratelimit_complain(struct ratelimit *rl);
/* End a failure episode. True when one was open (log "recovered" once);
 * the count swallowed is in rl->suppressed until the next complaint. */
bool ratelimit_release(struct ratelimit *rl);

/* Selftest: asserts on failure, prints " * ratelimit: OK". */
void ratelimit_test(bool verbose);

#endif
