/*
 * ep: endpoint names, from one table. Every internal ZeroMQ endpoint is a
 * template in which "{lane}" stands for the lane number; the default
 * templates are ipc:// paths under the runtime directory, and any can be
 * overridden with a tcp:// template to spread lanes over hosts.
 *
 *   endpoint            bound by           connected by        pattern
 *   ingestd.query       ingestd ROUTER     apid DEALER         rpc
 *   aggd.{lane}.in      aggd PULL          ingestd PUSH        readings
 *   aggd.{lane}.query   aggd ROUTER        apid DEALER         rpc
 *   aggd.{lane}.pub     aggd PUB           apid/tap SUB        readings
 *   anomalyd.{lane}.in  anomalyd PULL      aggd PUSH           readings
 *   anomalyd.{lane}.query anomalyd ROUTER  apid DEALER         rpc
 *   anomalyd.{lane}.pub anomalyd PUB       apid/tap SUB        anomalies
 *   alertd.{lane}.in    alertd PULL        anomalyd PUSH       readings+anomalies
 *   alertd.{lane}.query alertd ROUTER      apid DEALER         rpc
 *   alertd.{lane}.pub   alertd PUB         apid/tap SUB        alerts
 */
#ifndef SP_EP_H
#define SP_EP_H

#include <stdbool.h>

#include <czmq.h>
#include <stddef.h>
#include <stdint.h>

#define EP_MAX 512
/* Largest message (all frames) a bound socket takes: anything may
 * connect to one, and without a limit libzmq allocates whatever size a
 * frame's header declares (an ASan build aborts on 2^63; a plain one
 * reserves gigabytes a peer then fills). The largest legitimate message,
 * a batch of a 32 MiB request's readings with its keys, is about
 * 120 MB; a larger one drops the peer's connection. */
#define EP_MSG_MAX (1LL << 30)
/* ... and on a bound PUB or XPUB, where only (un)subscriptions arrive:
 * a topic is a type name ("readings"), so a longer prefix never matches.
 * libzmq keeps subscriptions in a trie of one node a byte; a few hundred
 * peers subscribing 70,000 bytes each kept anomalyd's PUB sends and its
 * zmq_ctx_term busy for minutes (the daemon did not stop on SIGTERM). */
#define EP_SUB_MAX 64

/* Default template for "<daemon>.<what>" under rundir, e.g.
 * ep_default(buf, len, "./var/run", "aggd", "in") gives
 * "ipc://./var/run/aggd.{lane}.in" (ingestd.query has no lane).
 * Returns buf. */
char *ep_default(char *buf, size_t len, const char *rundir,
                 const char *daemon, const char *what);
/* Expand "{lane}" in a template. Returns buf, or NULL when it would not
 * fit. */
char *ep_expand(char *buf, size_t len, const char *tmpl, unsigned lane);

/* zsock_bind and zsock_connect of one endpoint, after a check libzmq
 * leaves out: the port of a tcp:// endpoint is a number in 1..65535 (or
 * 0 or "*" to bind an ephemeral port). libzmq connects
 * tcp://127.0.0.1:99999 to port 34463 without a word, and reports
 * other impossible ports only asynchronously. Return 0, or -1 with errno
 * EINVAL for such a port or as zsock_bind/zsock_connect set it. */
int ep_bind(zsock_t *s, const char *ep);
int ep_connect(zsock_t *s, const char *ep);

/* A socket of type on the endpoint template tmpl ("" = the default for
 * daemon and what under rundir) with {lane} expanded, bound (with
 * ep_limit) or connected, with queue limit hwm and a 1 s linger. Returns NULL
 * (logged with the daemon's name) when the name is too long or bind/connect
 * fails. */
zsock_t *ep_socket(int type, const char *tmpl, const char *rundir,
                   const char *daemon, const char *what, unsigned lane,
                   bool bind, int64_t hwm);

/* Apply the limits of a bound socket (EP_MSG_MAX, EP_SUB_MAX for a PUB
 * or XPUB) to s, which the caller binds itself. ep_socket does this for
 * what it binds. */
void ep_limit(zsock_t *s);

/* Keep a bound PUB's subscriptions current: register it with loop, so
 * every turn lets libzmq apply the (un)subscriptions and departures of
 * its peers as they come (a PUB is never readable; the handler never
 * runs). Unwatched, they pile up until the next send or zmq_ctx_term,
 * which then removes each departed peer from the whole subscription
 * trie: quadratic in the peers, 85 s for 800 peers of one 255-byte
 * subscription each in an ASan anomalyd (tests/integration/11-zmq-monkey.py).
 * Returns zloop_reader's result. */
int ep_watch_pub(zloop_t *loop, zsock_t *pub);

/* Selftest: asserts on failure, prints " * ep: OK". */
void ep_test(bool verbose);

#endif
