/*
 * Fuzz target: address and prefix parsing, and the prefix table checked
 * against a brute-force scan.  Input: lines; "?ADDR" asks the table about
 * an address, any other line is a prefix stored under its line number.
 * Whatever parses must format and parse back to the same bits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netmatch.h"

#define MAX_LINES 64

struct stored {
	struct netprefix p;
	unsigned value;
};

static int contains(const struct netprefix *p, const struct netaddr *a)
{
	unsigned full = p->len / 8, rest = p->len % 8;
	if (memcmp(p->addr.b, a->b, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (p->addr.b[full] & mask) == (a->b[full] & mask);
}

static void round_trip_addr(const struct netaddr *a)
{
	char text[NETADDR_TEXT_MAX];
	struct netaddr back;
	netaddr_format(a, text, sizeof text);
	if (strlen(text) >= NETADDR_TEXT_MAX || netaddr_parse(text, &back) != 0 ||
	    memcmp(a->b, back.b, 16) != 0)
		abort();
}

static void round_trip_prefix(const struct netprefix *p)
{
	char text[NETADDR_TEXT_MAX + 8];
	char addr[NETADDR_TEXT_MAX];
	struct netprefix back;
	const char *why;
	if (p->len > 128)
		abort();
	netaddr_format(&p->addr, addr, sizeof addr);
	unsigned len = p->len;
	if (netaddr_is_v4(&p->addr)) {
		if (len < 96)
			abort(); /* an IPv4 prefix lives at /96 and below */
		len -= 96;
	}
	snprintf(text, sizeof text, "%s/%u", addr, len);
	if (netprefix_parse(text, &back, &why) != 0 || back.len != p->len ||
	    memcmp(back.addr.b, p->addr.b, 16) != 0)
		abort();
	/* Host bits are zero. */
	for (unsigned i = p->len; i < 128; i++)
		if (p->addr.b[i / 8] & (0x80 >> (i % 8)))
			abort();
}

static void compare(const struct nettable *t, const struct stored *s, size_t n,
		    const struct netaddr *a)
{
	unsigned from = 0;
	for (;;) {
		unsigned want = UINT32_MAX;
		for (size_t i = 0; i < n; i++)
			if (s[i].value >= from && s[i].value < want && contains(&s[i].p, a))
				want = s[i].value;
		unsigned got;
		int have = nettable_first_from(t, a, from, &got);
		if (have != (want != UINT32_MAX) || (have && got != want))
			abort();
		if (!have)
			return;
		from = got + 1;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = '\0';

	struct nettable *t = nettable_new();
	struct stored stored[MAX_LINES];
	struct netaddr queries[MAX_LINES];
	size_t nstored = 0, nqueries = 0;
	char *line = copy;
	for (unsigned number = 0; number < MAX_LINES && line != NULL; number++) {
		char *nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		if (line[0] == '?') {
			if (netaddr_parse(line + 1, &queries[nqueries]) == 0)
				round_trip_addr(&queries[nqueries++]);
		} else {
			struct netprefix p;
			const char *why = NULL;
			if (netprefix_parse(line, &p, &why) == 0) {
				round_trip_prefix(&p);
				if (nettable_add(t, &p, number) != 0)
					abort();
				stored[nstored++] = (struct stored){ p, number };
			} else if (why == NULL) {
				abort();
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	for (size_t i = 0; i < nqueries; i++)
		compare(t, stored, nstored, &queries[i]);
	for (size_t i = 0; i < nstored; i++)
		compare(t, stored, nstored, &stored[i].p.addr);
	nettable_free(t);
	free(copy);
	return 0;
}
