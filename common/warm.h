/*
 * warm: keep this machine's CPUs awake for a while after each request.
 *
 * On a virtual machine whose guest has no cpuidle driver (Firecracker
 * and the like: /sys/devices/system/cpu/cpuidle/current_driver says
 * "none"), an idle vCPU halts out to the host, and after a second of it
 * the host takes tens of milliseconds of work to run it at full speed
 * again: every hand-off between threads in a burst of requests is a
 * wake-up of a halted vCPU (docs/BENCHMARKS.md, "where a burst's time
 * goes"). warm is a busy-polling answer, in the spirit of SO_BUSY_POLL:
 * one thread per CPU, at SCHED_IDLE (it runs only when nothing else
 * wants the CPU, and anything that wakes takes the CPU from it at once),
 * wakes every 20 us while a request was seen in the last `ms`
 * milliseconds and sleeps otherwise, so the vCPUs never halt for long
 * during a burst. It trades CPU time for latency, so it is off unless
 * asked for (apid --warm-ms).
 */
#ifndef SP_WARM_H
#define SP_WARM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct warm warm_t;

/* Start one spinner per online CPU (at most 64), each at SCHED_IDLE with
 * every signal blocked, kept waking for ms milliseconds after each
 * warm_touch (the "spinners"). Returns NULL when ms <= 0 or no thread can be made (then
 * warm_touch(NULL) does nothing). */
warm_t *warm_new(int ms);
/* Stop and join the spinners; NULL-safe, sets *self_p to NULL. */
void warm_destroy(warm_t **self_p);

/* A request arrived: keep the spinners going until ms after now. Cheap (a clock read and an
 * atomic store) while the spinners are already awake. NULL-safe. */
void warm_touch(warm_t *self);

/* CPU time the spinners have spent, in nanoseconds (/stats: what the
 * latency costs). */
uint64_t warm_spin_ns(const warm_t *self);

/* Selftest. */
void warm_test(bool verbose);

#endif
