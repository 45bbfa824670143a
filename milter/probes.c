#include "probes.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct probe_entry {
	struct netaddr addr;
	time_t first;    /* start of this client's window */
	time_t last;     /* for eviction: the stalest goes first */
	unsigned count;  /* 0: free slot */
};

struct probe_table {
	pthread_mutex_t lock;
	struct probe_entry slots[PROBE_SLOTS];
};

struct probe_table *probe_table_new(void)
{
	struct probe_table *t = calloc(1, sizeof *t);
	if (t != NULL)
		pthread_mutex_init(&t->lock, NULL);
	return t;
}

void probe_table_free(struct probe_table *t)
{
	if (t != NULL) {
		pthread_mutex_destroy(&t->lock);
		free(t);
	}
}

/* FNV-1a over the address: cheap, and good enough to spread buckets. */
static size_t bucket_of(const struct netaddr *a)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < sizeof a->b; i++)
		h = (h ^ a->b[i]) * 16777619u;
	return (h % (PROBE_SLOTS / PROBE_BUCKET)) * PROBE_BUCKET;
}

static bool expired(const struct probe_entry *e, time_t now, unsigned window)
{
	return e->count == 0 || now - e->first >= (time_t)window || now < e->first;
}

/* The entry of addr in its bucket, or NULL. Called with the lock held. */
static struct probe_entry *find(struct probe_table *t, const struct netaddr *a)
{
	struct probe_entry *b = &t->slots[bucket_of(a)];
	for (int i = 0; i < PROBE_BUCKET; i++)
		if (b[i].count > 0 && memcmp(&b[i].addr, a, sizeof *a) == 0)
			return &b[i];
	return NULL;
}

/* The count of addr within the window. Called with the lock held. */
static unsigned count_locked(struct probe_table *t, const struct netaddr *addr,
			     time_t now, unsigned window)
{
	struct probe_entry *e = find(t, addr);
	return (e == NULL || expired(e, now, window)) ? 0 : e->count;
}

/* Records one refusal for addr. Called with the lock held. */
static unsigned add_locked(struct probe_table *t, const struct netaddr *addr,
			   time_t now, unsigned window)
{
	struct probe_entry *e = find(t, addr);
	if (e == NULL) {
		/* A free or expired slot, else the client seen longest ago. */
		struct probe_entry *b = &t->slots[bucket_of(addr)];
		e = &b[0];
		for (int i = 0; i < PROBE_BUCKET; i++) {
			if (expired(&b[i], now, window)) {
				e = &b[i];
				break;
			}
			if (b[i].last < e->last)
				e = &b[i];
		}
		e->count = 0;
	}
	if (expired(e, now, window)) {
		e->addr = *addr;
		e->first = now;
		e->count = 0;
	}
	e->count++;
	e->last = now;
	return e->count;
}

unsigned probe_table_count(struct probe_table *t, const struct netaddr *addr,
			   time_t now, unsigned window)
{
	pthread_mutex_lock(&t->lock);
	unsigned n = count_locked(t, addr, now, window);
	pthread_mutex_unlock(&t->lock);
	return n;
}

unsigned probe_table_add(struct probe_table *t, const struct netaddr *addr,
			 time_t now, unsigned window)
{
	pthread_mutex_lock(&t->lock);
	unsigned n = add_locked(t, addr, now, window);
	pthread_mutex_unlock(&t->lock);
	return n;
}

/*
 * Count, verdict and record are one lock section: two sessions of one
 * client refused at the same moment must not both see the count below
 * the limit.  policy_decide is pure and short, so holding the lock is cheap.
 */
void probes_decide(struct probe_table *t, const struct policy *p, struct question *q,
		   time_t now, struct verdict *v)
{
	if (t == NULL || p->window == 0 || q->client == NULL) {
		policy_decide(p, q, v);
		return;
	}
	pthread_mutex_lock(&t->lock);
	unsigned seen = count_locked(t, q->client, now, p->window);
	if (seen > q->refused)
		q->refused = seen;
	policy_decide(p, q, v);
	if (action_refuses(v->action))
		add_locked(t, q->client, now, p->window);
	pthread_mutex_unlock(&t->lock);
}
