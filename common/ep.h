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

/* Default template for "<daemon>.<what>" under rundir, e.g.
 * ep_default(buf, len, "./var/run", "aggd", "in") gives
 * "ipc://./var/run/aggd.{lane}.in" (ingestd.query has no lane).
 * Returns buf. */
char *ep_default(char *buf, size_t len, const char *rundir,
                 const char *daemon, const char *what);
/* Expand "{lane}" in a template. Returns buf, or NULL when it would not
 * fit. */
char *ep_expand(char *buf, size_t len, const char *tmpl, unsigned lane);

/* A socket of type on the endpoint template tmpl ("" = the default for
 * daemon and what under rundir) with {lane} expanded, bound (with
 * ep_limit) or connected, with queue limit hwm and a 1 s linger. Returns NULL (logged with the
 * daemon's name) when the name is too long or bind/connect fails. */
zsock_t *ep_socket(int type, const char *tmpl, const char *rundir,
                   const char *daemon, const char *what, unsigned lane,
                   bool bind, int64_t hwm);

/* Apply the limits of a bound socket (EP_MSG_MAX) to s, which the
 * caller binds itself. ep_socket does this for what it binds. */
void ep_limit(zsock_t *s);

/* Selftest: asserts on failure, prints " * ep: OK". */
void ep_test(bool verbose);

#endif
