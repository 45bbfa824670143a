/*
 * probes: counts refused commands per client address across every door and
 * session, within a time window (limits.window), so a client probing EXPN
 * through the milter and VRFY through the policy door is one prober.
 * Bounded memory: a fixed table of PROBE_SLOTS entries in small buckets;
 * a full bucket forgets its stalest client.  One mutex, held for a few
 * memory operations and one pure policy decision, never across I/O.
 */
#ifndef CMDGATE_PROBES_H
#define CMDGATE_PROBES_H

#include <time.h>

#include "netmatch.h"
#include "policy.h"

#define PROBE_BUCKET 8
#define PROBE_SLOTS (4096 * PROBE_BUCKET)

struct probe_table;

struct probe_table *probe_table_new(void);
void probe_table_free(struct probe_table *t);

/*
 * The table's own operations, each one lock section.  A door must not
 * count, decide and add with these: two sessions could both count under
 * the limit.  Doors call probes_decide, which holds the lock throughout.
 */

/* Refusals recorded for addr within the last `window` seconds. */
unsigned probe_table_count(struct probe_table *t, const struct netaddr *addr,
			   time_t now, unsigned window);

/* Records one refusal for addr; returns the count within the window. */
unsigned probe_table_add(struct probe_table *t, const struct netaddr *addr,
			 time_t now, unsigned window);

/*
 * The question every door asks: decides q under p, where the refusals seen
 * so far are the larger of q->refused (this session's) and the client's
 * count in the shared table; a refusal is recorded there, in the same lock
 * section as the count, so simultaneous sessions of one client cannot all
 * slip under the limit.  t may be NULL and is not used when the policy's
 * window is 0.
 */
void probes_decide(struct probe_table *t, const struct policy *p, struct question *q,
		   time_t now, struct verdict *v);

#endif
