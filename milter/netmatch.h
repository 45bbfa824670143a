/*
 * netmatch: client addresses, CIDR prefixes and a prefix table that answers
 * "which rules name a network containing this address" without scanning
 * the rule list.  IPv4 lives inside the IPv6 space as ::ffff:a.b.c.d, so
 * one table serves both families and IPv4-mapped IPv6 clients match IPv4
 * rules.  Pure code: no libmilter, no I/O, no locks (a built table is
 * read-only and may be shared between threads).
 */
#ifndef CMDGATE_NETMATCH_H
#define CMDGATE_NETMATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct netaddr {
	unsigned char b[16]; /* network order; IPv4 as ::ffff:a.b.c.d */
};

struct netprefix {
	struct netaddr addr; /* host bits are zero */
	unsigned len;        /* 0..128, in the IPv6 space (IPv4 /n is 96+n) */
};

/* Longest text netaddr_format writes, with its NUL. */
#define NETADDR_TEXT_MAX 46

/* "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" -> 0; anything else -> -1. */
int netaddr_parse(const char *text, struct netaddr *out);

/* AF_INET or AF_INET6 socket address -> 0; NULL or other family -> -1. */
int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out);

/* Dotted quad for IPv4 (also when it arrived IPv4-mapped), RFC 5952 text otherwise. */
void netaddr_format(const struct netaddr *a, char *buf, size_t size);

bool netaddr_is_v4(const struct netaddr *a);

/*
 * "10.0.0.0/8", "2001:db8::/32", "192.0.2.7" (a host), "::1".
 * Returns 0, or -1 and points *why at a static reason: "not an IP address",
 * "bad prefix length", "prefix length exceeds 32", "prefix length exceeds 128",
 * "host bits set".
 */
int netprefix_parse(const char *text, struct netprefix *out, const char **why);

/*
 * A table of prefixes, each carrying a set of unsigned values (rule indices).
 * Lookups do not scan: a path-compressed trie, entered through jump tables.
 * Since IPv4 is ::ffff:0:0/96, an IPv6 prefix that covers that block (::/0,
 * or an odd one like ::/80) also contains every IPv4 client; ordinary IPv6
 * prefixes never do.
 */
struct nettable;

/* NULL on ENOMEM.  About 512 KiB of jump tables, mapped as they are used. */
struct nettable *nettable_new(void);
void nettable_free(struct nettable *t);

/*
 * Adds value under prefix (duplicates are kept once; host bits are ignored).
 * 0, or -1 on ENOMEM (or a NULL argument, or len > 128), leaving the table
 * as it was.  Cheapest when values arrive in increasing order (rule order).
 */
int nettable_add(struct nettable *t, const struct netprefix *p, unsigned value);

/*
 * The smallest value >= from stored under any prefix that contains a.
 * Returns true and sets *found, or false when there is none.  Callers walk
 * rules in order with from = 0, then from = found + 1, ...
 */
bool nettable_first_from(const struct nettable *t, const struct netaddr *a,
			 unsigned from, unsigned *found);

/* Number of prefixes stored (for logs and benchmarks). */
size_t nettable_size(const struct nettable *t);

#endif
