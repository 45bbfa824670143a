/*
 * rules-bench: how the decision cost, load time and reload time of a
 * policy grow with its number of CIDR rules.
 *
 * For each size (default 10, 1000, 100000) it writes a policy file of that
 * many rules, one random prefix each (half IPv4 /16../32, half IPv6
 * 2000::/3 /32../128), loads it with config_load (the daemon's loader) and
 * asks policy_decide (the daemon's verdict function) about two pools of
 * client addresses:
 *   late: an address inside a rule from the last tenth of the list;
 *   miss: a random address no rule contains.
 * Every answer is checked against a linear first-match scan first.  The
 * timing rounds are short and interleave the sizes (rotating their order)
 * so that noise on a shared machine falls on all of them alike; medians
 * are reported.
 * Reload is running_reload(), the SIGUSR1 path: re-read, swap, free.
 *
 * usage: rules-bench DIR [N...]   (DIR: where the policy files are written)
 * prints "rules n=N late_ns=... miss_ns=... load_ms=... reload_ms=... policy_kib=..."
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "benchutil.h"
#include "config.h"
#include "netmatch.h"
#include "policy.h"
#include "running.h"

#define MAX_SIZES 8
#define POOL 1024          /* addresses per pool */
#define ROUNDS 41          /* timing rounds, interleaved: short ones, so noise hits every size */
#define DECISIONS 40000    /* per pool, per round */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible, the same policy on every run */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1du;
}

struct size_case {
	unsigned n;
	char file[512];
	struct netprefix *prefixes;
	struct netaddr late[POOL], miss[POOL];
	unsigned late_rule[POOL];       /* expected rule number (1-based) */
	struct policy *policy;
	double late_ns[ROUNDS], miss_ns[ROUNDS];
	double load_ms[ROUNDS], reload_ms[ROUNDS];
	unsigned load_rounds;
	size_t policy_bytes;
};

static void random_prefix(struct netprefix *p, bool v4)
{
	memset(p, 0, sizeof *p);
	if (v4) {
		uint32_t a = (uint32_t)rnd();
		unsigned len = 16 + (unsigned)(rnd() % 17);
		a = (a % (223u << 24)) + (1u << 24); /* 1.0.0.0 .. 223.255.255.255 */
		a &= len == 0 ? 0 : ~0u << (32 - len);
		p->addr.b[10] = p->addr.b[11] = 0xff;
		for (int i = 0; i < 4; i++)
			p->addr.b[12 + i] = (unsigned char)(a >> (24 - 8 * i));
		p->len = 96 + len;
	} else {
		unsigned len = 32 + (unsigned)(rnd() % 97);
		for (int i = 0; i < 16; i += 8) {
			uint64_t w = rnd();
			memcpy(p->addr.b + i, &w, 8);
		}
		p->addr.b[0] = (unsigned char)(0x20 | (p->addr.b[0] & 0x1f)); /* 2000::/3 */
		for (unsigned bit = len; bit < 128; bit++)
			p->addr.b[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
		p->len = len;
	}
}

static bool contains(const struct netprefix *p, const struct netaddr *a)
{
	unsigned full = p->len / 8, rest = p->len % 8;
	if (memcmp(p->addr.b, a->b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff00u >> rest);
	return (p->addr.b[full] & mask) == (a->b[full] & mask);
}

/* The linear first-match answer: 1-based rule number, 0 when none. */
static unsigned linear_first(const struct size_case *c, const struct netaddr *a)
{
	for (unsigned i = 0; i < c->n; i++)
		if (contains(&c->prefixes[i], a))
			return i + 1;
	return 0;
}

static void prefix_text(const struct netprefix *p, char *buf, size_t size)
{
	char addr[NETADDR_TEXT_MAX];
	netaddr_format(&p->addr, addr, sizeof addr);
	bool v4 = netaddr_is_v4(&p->addr);
	snprintf(buf, size, "%s/%u", addr, v4 ? p->len - 96 : p->len);
}

static int write_policy(struct size_case *c, const char *dir)
{
	snprintf(c->file, sizeof c->file, "%s/rules-%u.conf", dir, c->n);
	FILE *f = fopen(c->file, "w");
	if (f == NULL) {
		perror(c->file);
		return -1;
	}
	fprintf(f, "# %u random CIDR rules, written by rules-bench\n"
		   "commands = { VRFY = { action = \"reject\"; }; EXPN = { action = \"reject\"; };"
		   " TURN = { action = \"reject\"; }; };\n"
		   "rules = (\n", c->n);
	c->prefixes = calloc(c->n, sizeof *c->prefixes);
	for (unsigned i = 0; i < c->n; i++) {
		char text[80];
		random_prefix(&c->prefixes[i], i % 2 == 0);
		prefix_text(&c->prefixes[i], text, sizeof text);
		fprintf(f, "  { clients = [ \"%s\" ]; action = \"%s\"; }%s\n", text,
			i % 3 == 0 ? "allow" : "tempfail", i + 1 < c->n ? "," : "");
	}
	fprintf(f, ");\nlimits = { probes = 0; };\n");
	return fclose(f);
}

static void make_pools(struct size_case *c)
{
	unsigned tail = c->n / 10 ? c->n / 10 : 1;
	for (unsigned i = 0; i < POOL; i++) {
		unsigned j = c->n - tail + (unsigned)(rnd() % tail);
		struct netprefix *p = &c->prefixes[j];
		struct netaddr a = p->addr;
		uint64_t noise[2] = { rnd(), rnd() };
		unsigned char *nb = (unsigned char *)noise;
		for (unsigned bit = p->len; bit < 128; bit++)
			if (nb[bit / 8] & (0x80u >> (bit % 8)))
				a.b[bit / 8] |= (unsigned char)(0x80u >> (bit % 8));
		c->late[i] = a;
		c->late_rule[i] = linear_first(c, &a);
	}
	for (unsigned i = 0; i < POOL; i++) {
		struct netprefix p;
		do {
			random_prefix(&p, i % 2 == 0);
			uint64_t noise[2] = { rnd(), rnd() };
			unsigned char *nb = (unsigned char *)noise;
			for (unsigned bit = p.len; bit < 128; bit++)
				if (nb[bit / 8] & (0x80u >> (bit % 8)))
					p.addr.b[bit / 8] |= (unsigned char)(0x80u >> (bit % 8));
		} while (linear_first(c, &p.addr) != 0);
		c->miss[i] = p.addr;
	}
}

static void decide(const struct policy *p, const struct netaddr *a, struct verdict *v)
{
	struct question q = { .verb = "EXPN", .verb_len = 4, .client = a };
	policy_decide(p, &q, v);
}

/* Checks every pooled answer against the linear scan; -1 on a mismatch. */
static int verify(const struct size_case *c)
{
	for (unsigned i = 0; i < POOL; i++) {
		struct verdict v;
		decide(c->policy, &c->late[i], &v);
		if (v.source != SOURCE_RULE || v.rule != c->late_rule[i]) {
			fprintf(stderr, "rules-bench: n=%u late address %u: rule %u, linear scan says %u\n",
				c->n, i, v.source == SOURCE_RULE ? v.rule : 0, c->late_rule[i]);
			return -1;
		}
		decide(c->policy, &c->miss[i], &v);
		if (v.source != SOURCE_COMMAND) {
			fprintf(stderr, "rules-bench: n=%u miss address %u matched rule %u\n", c->n, i, v.rule);
			return -1;
		}
	}
	return 0;
}

static volatile unsigned long sink; /* keeps the verdicts observable */

static double time_pool(const struct policy *p, const struct netaddr *pool)
{
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < DECISIONS; i++) {
		struct verdict v;
		decide(p, &pool[i % POOL], &v);
		sink += v.rule;
	}
	return (double)(now_ns() - t0) / DECISIONS;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double time_load(struct size_case *c)
{
	struct config_error err;
	uint64_t t0 = now_ns();
	struct policy *p = config_load(c->file, &err);
	double ms = (double)(now_ns() - t0) / 1e6;
	if (p == NULL) {
		char text[1024];
		config_error_format(&err, text, sizeof text);
		fprintf(stderr, "rules-bench: %s\n", text);
		exit(1);
	}
	policy_free(p);
	return ms;
}

/* running_reload logs its outcome; keep that line out of the bench's output. */
static double time_reload(void)
{
	int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
	dup2(null, STDERR_FILENO);
	uint64_t t0 = now_ns();
	int rc = running_reload();
	double ms = (double)(now_ns() - t0) / 1e6;
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(null);
	if (rc != 0) {
		fprintf(stderr, "rules-bench: reload failed\n");
		exit(1);
	}
	return ms;
}

int main(int argc, char **argv)
{
	static struct size_case cases[MAX_SIZES];
	unsigned ncases = 0;
	if (argc < 2) {
		fprintf(stderr, "usage: rules-bench DIR [N...]\n");
		return 64;
	}
	for (int i = 2; i < argc && ncases < MAX_SIZES; i++)
		cases[ncases++].n = (unsigned)parse_number(argv[i], 'n');
	if (ncases == 0) {
		unsigned def[] = { 10, 1000, 100000 };
		for (unsigned i = 0; i < 3; i++)
			cases[ncases++].n = def[i];
	}

	for (unsigned i = 0; i < ncases; i++) {
		struct size_case *c = &cases[i];
		if (write_policy(c, argv[1]) < 0)
			return 1;
		make_pools(c);
		struct mallinfo2 m0 = mallinfo2();
		struct config_error err;
		c->policy = config_load(c->file, &err);
		if (c->policy == NULL) {
			char text[1024];
			config_error_format(&err, text, sizeof text);
			fprintf(stderr, "rules-bench: %s\n", text);
			return 1;
		}
		struct mallinfo2 m1 = mallinfo2(); /* large blocks are mmapped: hblkhd */
		c->policy_bytes = (m1.uordblks + m1.hblkhd) - (m0.uordblks + m0.hblkhd);
		if (verify(c) < 0)
			return 1;
	}

	/* Decisions: every round times every size, in a rotating order. */
	for (unsigned r = 0; r < ROUNDS; r++)
		for (unsigned k = 0; k < ncases; k++) {
			struct size_case *c = &cases[(r + k) % ncases];
			c->late_ns[r] = time_pool(c->policy, c->late);
			c->miss_ns[r] = time_pool(c->policy, c->miss);
		}

	/* Load: as many rounds as fit in a few seconds for the largest size. */
	unsigned load_rounds = 5;
	for (unsigned r = 0; r < load_rounds; r++)
		for (unsigned k = 0; k < ncases; k++) {
			struct size_case *c = &cases[(r + k) % ncases];
			c->load_ms[r] = time_load(c);
		}

	/* Reload through the daemon's SIGUSR1 path, the policy in force being this file's. */
	for (unsigned k = 0; k < ncases; k++) {
		struct size_case *c = &cases[k];
		running_install(c->policy);
		c->policy = NULL; /* owned by running.c now */
		for (unsigned r = 0; r < load_rounds; r++)
			c->reload_ms[r] = time_reload();
		running_clear();
	}

	for (unsigned k = 0; k < ncases; k++) {
		struct size_case *c = &cases[k];
		printf("rules n=%u late_ns=%.1f miss_ns=%.1f load_ms=%.2f reload_ms=%.2f policy_kib=%.0f\n",
		       c->n, median(c->late_ns, ROUNDS), median(c->miss_ns, ROUNDS),
		       median(c->load_ms, load_rounds), median(c->reload_ms, load_rounds),
		       c->policy_bytes / 1024.0);
		free(c->prefixes);
	}
	return 0;
}
