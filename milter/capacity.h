/*
 * capacity: how many MTA connections the daemon takes at once.
 *
 * Each milter session holds one socket.  Debian's libmilter serves the
 * sessions from a small pool of worker threads and waits on them with
 * poll(), so neither threads nor FD_SETSIZE bound them: descriptors do.
 * Past RLIMIT_NOFILE libmilter's accept() fails with EMFILE, which it
 * retries in a tight loop without logging, while new connections wait in
 * the listen backlog until the MTA gives up on them.  So the soft limit is
 * raised to the hard one at start, and a session that would eat into the
 * last few descriptors is refused (tempfail, logged) before libmilter
 * gets there.
 */
#ifndef CMDGATE_CAPACITY_H
#define CMDGATE_CAPACITY_H

#include <stdbool.h>

/* Descriptors kept free for reloads, syslog and libmilter's own pipes. */
#define CAPACITY_RESERVE 32

/* Raises the descriptor limit and sets the session budget; logs both. */
void capacity_init(void);

/* Counts a new session in; false (and a rate-limited warning) when full. */
bool capacity_enter(void);
void capacity_leave(void);

#endif
