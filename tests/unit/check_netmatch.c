/*
 * Unit tests for milter/netmatch.c: address and prefix parsing, containment
 * at the edges, and the prefix table checked against a naive linear scan.
 */
#include "netmatch.h"

#include <arpa/inet.h>
#include <check.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

/* ---- helpers ------------------------------------------------------------ */

static struct netaddr addr(const char *text)
{
	struct netaddr a;

	ck_assert_msg(netaddr_parse(text, &a) == 0, "cannot parse %s", text);
	return a;
}

static struct netprefix prefix(const char *text)
{
	struct netprefix p;
	const char *why = NULL;

	ck_assert_msg(netprefix_parse(text, &p, &why) == 0, "cannot parse %s: %s",
		      text, why ? why : "?");
	return p;
}

struct text {
	char s[512];
};

static struct text format(const struct netaddr *a)
{
	struct text t;

	netaddr_format(a, t.s, sizeof t.s);
	return t;
}

static void add(struct nettable *t, const char *p, unsigned value)
{
	struct netprefix np = prefix(p);

	ck_assert_int_eq(nettable_add(t, &np, value), 0);
}

/* Every value stored for address a, in order, as "3 5 7" ("" for none). */
static struct text walk(const struct nettable *t, const char *a)
{
	struct netaddr na = addr(a);
	struct text out = { "" };
	size_t used = 0;
	unsigned from = 0, found;

	while (nettable_first_from(t, &na, from, &found)) {
		ck_assert_uint_ge(found, from);
		used += (size_t)snprintf(out.s + used, sizeof out.s - used, "%s%u",
					 used ? " " : "", found);
		ck_assert_uint_lt(used, sizeof out.s);
		if (found == UINT_MAX)
			break;
		from = found + 1;
	}
	return out;
}

/* Whether a table holding only prefix p matches address a. */
static bool matches(const char *p, const char *a)
{
	struct nettable *t = nettable_new();
	struct netaddr na = addr(a);
	unsigned found = 0;
	bool hit;

	ck_assert_ptr_nonnull(t);
	add(t, p, 7);
	hit = nettable_first_from(t, &na, 0, &found);
	if (hit)
		ck_assert_uint_eq(found, 7);
	nettable_free(t);
	return hit;
}

/* The reason netprefix_parse gives for text, which must fail. */
static const char *reason(const char *text)
{
	struct netprefix p;
	const char *why = NULL;

	memset(&p, 0xa5, sizeof p);
	ck_assert_msg(netprefix_parse(text, &p, &why) == -1, "accepted \"%s\"", text);
	ck_assert_ptr_nonnull(why);
	ck_assert_uint_eq(p.len, 0xa5a5a5a5u); /* output untouched on failure */
	return why;
}

#define ck_assert_reason(text, want) ck_assert_str_eq(reason(text), (want))

/*
 * Named copies: Check keeps a pointer to its argument past the statement
 * that made it, which a temporary struct would not outlive.
 */
#define ck_assert_walk(t, a, want) \
	do { \
		struct text walked_ = walk(t, a); \
		ck_assert_str_eq(walked_.s, want); \
	} while (0)

#define ck_assert_format(a, want) \
	do { \
		struct text formatted_ = format(a); \
		ck_assert_str_eq(formatted_.s, want); \
	} while (0)

/* ---- addresses ---------------------------------------------------------- */

START_TEST(test_v4_roundtrip)
{
	static const char *const cases[] = {
		"192.0.2.1", "0.0.0.0", "255.255.255.255", "10.0.0.1", "127.0.0.1",
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct netaddr a = addr(cases[i]);
		ck_assert(netaddr_is_v4(&a));
		ck_assert_format(&a, cases[i]);
	}
}
END_TEST

START_TEST(test_v4_layout)
{
	struct netaddr a = addr("192.0.2.1");
	static const unsigned char want[16] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1
	};

	ck_assert_mem_eq(a.b, want, 16);
}
END_TEST

START_TEST(test_v6_roundtrip)
{
	static const char *const cases[] = {
		"2001:db8::1", "::", "::1", "fe80::1", "2001:db8::1:0:0:1",
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "64:ff9b::c000:201",
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct netaddr a = addr(cases[i]);
		ck_assert(!netaddr_is_v4(&a));
		ck_assert_format(&a, cases[i]);
	}
}
END_TEST

START_TEST(test_v6_canonical_form)
{
	struct netaddr a = addr("2001:DB8:0:0:0:0:0:0001");

	ck_assert_format(&a, "2001:db8::1");
	a = addr("2001:db8:0:0:1:0:0:1");
	ck_assert_format(&a, "2001:db8::1:0:0:1");
}
END_TEST

START_TEST(test_mapped_is_v4)
{
	struct netaddr v4 = addr("192.0.2.1");
	struct netaddr mapped = addr("::ffff:192.0.2.1");
	struct netaddr hex = addr("::FFFF:c000:0201");

	ck_assert_mem_eq(v4.b, mapped.b, 16);
	ck_assert_mem_eq(v4.b, hex.b, 16);
	ck_assert(netaddr_is_v4(&mapped));
	ck_assert_format(&mapped, "192.0.2.1");
	ck_assert_format(&hex, "192.0.2.1");
}
END_TEST

START_TEST(test_compat_is_not_v4)
{
	/* ::192.0.2.1 (deprecated "IPv4-compatible") is a plain IPv6 address. */
	struct netaddr a = addr("::192.0.2.1");
	struct netaddr v4 = addr("192.0.2.1");

	ck_assert(!netaddr_is_v4(&a));
	ck_assert_mem_ne(a.b, v4.b, 16);
}
END_TEST

START_TEST(test_addr_rejects)
{
	static const char *const bad[] = {
		"", " ", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1.2.3", "1.2.3.4.5",
		"1.2.3.4x", "256.1.1.1", "1.2.3.4/32", "fe80::1%eth0", "fe80::1%1",
		"::1::2", "2001:db8::g", "12345::", "abc", "localhost", "::ffff:1.2.3",
	};
	struct netaddr a;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(netaddr_parse(bad[i], &a) == -1, "accepted \"%s\"", bad[i]);
	ck_assert_int_eq(netaddr_parse(NULL, &a), -1);
}
END_TEST

START_TEST(test_format_small_buffer)
{
	struct netaddr a = addr("192.0.2.1");
	char buf[NETADDR_TEXT_MAX];

	memset(buf, 'x', sizeof buf);
	netaddr_format(&a, buf, 5);
	ck_assert_str_eq(buf, "");
	netaddr_format(&a, buf, 10); /* exactly "192.0.2.1" and its NUL */
	ck_assert_str_eq(buf, "192.0.2.1");
	buf[0] = 'x';
	netaddr_format(&a, buf, 0);
	ck_assert_int_eq(buf[0], 'x');
}
END_TEST

START_TEST(test_format_longest)
{
	struct netaddr a = addr("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
	char buf[NETADDR_TEXT_MAX];

	netaddr_format(&a, buf, sizeof buf);
	ck_assert_str_eq(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}
END_TEST

START_TEST(test_from_sockaddr)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_un sun;
	struct netaddr a;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
	ck_assert_int_eq(netaddr_from_sockaddr((struct sockaddr *)&sin, &a), 0);
	ck_assert_format(&a, "192.0.2.1");

	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr.s6_addr[10] = 0xff;
	sin6.sin6_addr.s6_addr[11] = 0xff;
	sin6.sin6_addr.s6_addr[12] = 192;
	sin6.sin6_addr.s6_addr[15] = 7;
	ck_assert_int_eq(netaddr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
	ck_assert(netaddr_is_v4(&a));
	ck_assert_format(&a, "192.0.0.7");

	sin6.sin6_addr.s6_addr[0] = 0x20;
	sin6.sin6_addr.s6_addr[1] = 0x01;
	ck_assert_int_eq(netaddr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
	ck_assert(!netaddr_is_v4(&a));

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	ck_assert_int_eq(netaddr_from_sockaddr((struct sockaddr *)&sun, &a), -1);
	ck_assert_int_eq(netaddr_from_sockaddr(NULL, &a), -1);
}
END_TEST

/* ---- prefixes ----------------------------------------------------------- */

START_TEST(test_prefix_v4)
{
	struct netprefix p = prefix("10.0.0.0/8");

	ck_assert_uint_eq(p.len, 104);
	ck_assert_format(&p.addr, "10.0.0.0");
	ck_assert_uint_eq(prefix("0.0.0.0/0").len, 96);
	ck_assert_uint_eq(prefix("255.255.255.255/32").len, 128);
	ck_assert_uint_eq(prefix("10.0.0.0/008").len, 104);
}
END_TEST

START_TEST(test_prefix_v6)
{
	struct netprefix p = prefix("2001:db8::/32");

	ck_assert_uint_eq(p.len, 32);
	ck_assert_format(&p.addr, "2001:db8::");
	ck_assert_uint_eq(prefix("::/0").len, 0);
	ck_assert_uint_eq(prefix("::1/128").len, 128);
	ck_assert_uint_eq(prefix("8000::/1").len, 1);
}
END_TEST

START_TEST(test_prefix_host)
{
	struct netprefix p = prefix("192.0.2.7");

	ck_assert_uint_eq(p.len, 128);
	ck_assert_format(&p.addr, "192.0.2.7");
	p = prefix("::1");
	ck_assert_uint_eq(p.len, 128);
	ck_assert_format(&p.addr, "::1");
}
END_TEST

START_TEST(test_prefix_mapped)
{
	struct netprefix m = prefix("::ffff:10.0.0.0/104");
	struct netprefix v = prefix("10.0.0.0/8");

	ck_assert_uint_eq(m.len, v.len);
	ck_assert_mem_eq(m.addr.b, v.addr.b, 16);

	m = prefix("::ffff:0:0/96");
	v = prefix("0.0.0.0/0");
	ck_assert_uint_eq(m.len, v.len);
	ck_assert_mem_eq(m.addr.b, v.addr.b, 16);

	m = prefix("::ffff:192.0.2.1");
	v = prefix("192.0.2.1/32");
	ck_assert_uint_eq(m.len, v.len);
	ck_assert_mem_eq(m.addr.b, v.addr.b, 16);
}
END_TEST

START_TEST(test_prefix_why_optional)
{
	struct netprefix p;

	ck_assert_int_eq(netprefix_parse("nonsense", &p, NULL), -1);
	ck_assert_int_eq(netprefix_parse("10.0.0.0/8", &p, NULL), 0);
}
END_TEST

START_TEST(test_err_not_address)
{
	ck_assert_reason("", "not an IP address");
	ck_assert_reason("/8", "not an IP address");
	ck_assert_reason("garbage", "not an IP address");
	ck_assert_reason("garbage/8", "not an IP address");
	ck_assert_reason("1.2.3/24", "not an IP address");
	ck_assert_reason(" 10.0.0.0/8", "not an IP address");
	ck_assert_reason("10.0.0.0 /8", "not an IP address");
	ck_assert_reason("fe80::%eth0/64", "not an IP address");
	ck_assert_reason("fe80::1%eth0", "not an IP address");
	ck_assert_reason("10.0.0.0.0/8", "not an IP address");
	ck_assert_reason("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb/8",
			 "not an IP address");
	ck_assert_int_eq(netprefix_parse(NULL, NULL, NULL), -1);
}
END_TEST

START_TEST(test_err_bad_length)
{
	ck_assert_reason("10.0.0.0/", "bad prefix length");
	ck_assert_reason("10.0.0.0/x", "bad prefix length");
	ck_assert_reason("10.0.0.0/+8", "bad prefix length");
	ck_assert_reason("10.0.0.0/-8", "bad prefix length");
	ck_assert_reason("10.0.0.0/ 8", "bad prefix length");
	ck_assert_reason("10.0.0.0/8 ", "bad prefix length");
	ck_assert_reason("10.0.0.0/8x", "bad prefix length");
	ck_assert_reason("10.0.0.0/8/8", "bad prefix length");
	ck_assert_reason("10.0.0.0/0008", "bad prefix length");
	ck_assert_reason("10.0.0.0/0x8", "bad prefix length");
	ck_assert_reason("2001:db8::/", "bad prefix length");
	ck_assert_reason("2001:db8::/+32", "bad prefix length");
	ck_assert_reason("::/00000", "bad prefix length");
}
END_TEST

START_TEST(test_err_exceeds_32)
{
	ck_assert_reason("10.0.0.0/33", "prefix length exceeds 32");
	ck_assert_reason("0.0.0.0/128", "prefix length exceeds 32");
	ck_assert_reason("0.0.0.0/999", "prefix length exceeds 32");
}
END_TEST

START_TEST(test_err_exceeds_128)
{
	ck_assert_reason("::1/129", "prefix length exceeds 128");
	ck_assert_reason("::/999", "prefix length exceeds 128");
	/* A mapped address is written in IPv6 text, so the IPv6 limit applies. */
	ck_assert_reason("::ffff:10.0.0.0/129", "prefix length exceeds 128");
}
END_TEST

START_TEST(test_err_host_bits)
{
	ck_assert_reason("10.0.0.1/8", "host bits set");
	ck_assert_reason("10.0.0.1/31", "host bits set");
	ck_assert_reason("128.0.0.0/0", "host bits set");
	ck_assert_reason("2001:db8::1/32", "host bits set");
	ck_assert_reason("::1/127", "host bits set");
	ck_assert_reason("8000::/0", "host bits set");
	/* The ffff of a mapped address lies in bits 80..95. */
	ck_assert_reason("::ffff:10.0.0.0/90", "host bits set");
	ck_assert_reason("::ffff:11.0.0.0/103", "host bits set");
}
END_TEST

/* ---- containment at the edges ------------------------------------------- */

START_TEST(test_contain_zero)
{
	ck_assert(matches("0.0.0.0/0", "0.0.0.0"));
	ck_assert(matches("0.0.0.0/0", "255.255.255.255"));
	ck_assert(matches("0.0.0.0/0", "::ffff:1.2.3.4"));
	ck_assert(!matches("0.0.0.0/0", "::1"));
	ck_assert(!matches("0.0.0.0/0", "2001:db8::1"));
	ck_assert(!matches("0.0.0.0/0", "::ffff:0:0:0")); /* ::ffff:0:0:0/128 is not mapped */
	ck_assert(matches("::/0", "::"));
	ck_assert(matches("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	ck_assert(matches("::/0", "10.1.2.3"));
}
END_TEST

START_TEST(test_contain_host)
{
	ck_assert(matches("192.0.2.1/32", "192.0.2.1"));
	ck_assert(!matches("192.0.2.1/32", "192.0.2.0"));
	ck_assert(!matches("192.0.2.1/32", "192.0.2.2"));
	ck_assert(matches("192.0.2.1", "::ffff:192.0.2.1"));
	ck_assert(matches("2001:db8::1/128", "2001:db8::1"));
	ck_assert(!matches("2001:db8::1/128", "2001:db8::"));
	ck_assert(!matches("2001:db8::1/128", "2001:db8::2"));
	ck_assert(!matches("2001:db8::1/128", "2001:db8::1:0:0:1"));
	ck_assert(matches("::", "::"));
	ck_assert(!matches("::", "::1"));
}
END_TEST

START_TEST(test_contain_31_127)
{
	ck_assert(matches("192.0.2.0/31", "192.0.2.0"));
	ck_assert(matches("192.0.2.0/31", "192.0.2.1"));
	ck_assert(!matches("192.0.2.0/31", "192.0.2.2"));
	ck_assert(!matches("192.0.2.0/31", "192.0.1.255"));
	ck_assert(matches("2001:db8::/127", "2001:db8::"));
	ck_assert(matches("2001:db8::/127", "2001:db8::1"));
	ck_assert(!matches("2001:db8::/127", "2001:db8::2"));
	ck_assert(!matches("2001:db8::/127", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
}
END_TEST

START_TEST(test_contain_1)
{
	ck_assert(matches("128.0.0.0/1", "128.0.0.0"));
	ck_assert(matches("128.0.0.0/1", "255.255.255.255"));
	ck_assert(!matches("128.0.0.0/1", "127.255.255.255"));
	ck_assert(matches("0.0.0.0/1", "127.255.255.255"));
	ck_assert(!matches("0.0.0.0/1", "128.0.0.0"));
	ck_assert(matches("8000::/1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	ck_assert(matches("8000::/1", "8000::"));
	ck_assert(!matches("8000::/1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	ck_assert(!matches("8000::/1", "10.0.0.1"));
}
END_TEST

START_TEST(test_contain_word_edges)
{
	/* Bits 63/64 straddle the two halves of the internal 128-bit key. */
	ck_assert(matches("2001:db8:0:1::/64", "2001:db8:0:1:ffff:ffff:ffff:ffff"));
	ck_assert(!matches("2001:db8:0:1::/64", "2001:db8:0:2::"));
	ck_assert(!matches("2001:db8:0:1::/64", "2001:db8:0:0:ffff:ffff:ffff:ffff"));
	ck_assert(matches("2001:db8:0:0::/63", "2001:db8:0:1:ffff::"));
	ck_assert(!matches("2001:db8:0:0::/63", "2001:db8:0:2::"));
	ck_assert(matches("2001:db8:0:1:8000::/65", "2001:db8:0:1:ffff::"));
	ck_assert(!matches("2001:db8:0:1:8000::/65", "2001:db8:0:1:7fff::"));
}
END_TEST

START_TEST(test_v4_rule_matches_mapped_client)
{
	struct nettable *t = nettable_new();
	struct sockaddr_in6 sin6;
	struct netaddr a;
	unsigned found = 0;

	add(t, "10.0.0.0/8", 3);
	ck_assert_walk(t, "::ffff:10.1.2.3", "3");
	ck_assert_walk(t, "10.1.2.3", "3");
	ck_assert_walk(t, "::ffff:11.1.2.3", "");
	ck_assert_walk(t, "::10.1.2.3", ""); /* compatible, not mapped */

	/* The same client as it arrives from an IPv6 socket. */
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	ck_assert_int_eq(inet_pton(AF_INET6, "::ffff:10.9.8.7", &sin6.sin6_addr), 1);
	ck_assert_int_eq(netaddr_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
	ck_assert(nettable_first_from(t, &a, 0, &found));
	ck_assert_uint_eq(found, 3);
	nettable_free(t);
}
END_TEST

START_TEST(test_v6_rule_skips_v4_client)
{
	static const char *const clients[] = {
		"0.0.0.0", "10.1.2.3", "192.0.2.1", "255.255.255.255", "::ffff:127.0.0.1",
	};
	struct nettable *t = nettable_new();

	add(t, "2001:db8::/32", 1);
	add(t, "2000::/3", 2);
	add(t, "fe80::/10", 3);
	add(t, "::1", 4);
	add(t, "::/96", 5);        /* the IPv4-compatible block, not mapped */
	add(t, "64:ff9b::/96", 6); /* NAT64 */
	add(t, "8000::/1", 7);
	add(t, "::ffff:0:0:0/96", 8); /* SIIT, next to the mapped block */
	for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++)
		ck_assert_walk(t, clients[i], "");
	ck_assert_walk(t, "2001:db8::25", "1 2");

	add(t, "::/0", 9);
	for (size_t i = 0; i < sizeof clients / sizeof clients[0]; i++)
		ck_assert_walk(t, clients[i], "9");
	nettable_free(t);
}
END_TEST

/* ---- the table ---------------------------------------------------------- */

START_TEST(test_table_empty)
{
	struct nettable *t = nettable_new();
	struct netaddr a = addr("10.0.0.1");
	unsigned found = 42;

	ck_assert_uint_eq(nettable_size(t), 0);
	ck_assert(!nettable_first_from(t, &a, 0, &found));
	ck_assert_uint_eq(found, 42);
	ck_assert_walk(t, "::", "");
	nettable_free(t);
	nettable_free(NULL);
}
END_TEST

/* One table of nested prefixes shared by the ordering tests. */
static struct nettable *nested_table(void)
{
	struct nettable *t = nettable_new();

	ck_assert_ptr_nonnull(t);
	add(t, "10.1.2.3/32", 30);
	add(t, "10.0.0.0/8", 20);
	add(t, "10.1.0.0/16", 12);
	add(t, "10.0.0.0/8", 5);
	add(t, "10.1.2.0/24", 7);
	add(t, "10.1.0.0/16", 3);
	add(t, "0.0.0.0/0", 15);
	add(t, "::/0", 40);
	add(t, "192.168.0.0/16", 1);
	add(t, "10.2.0.0/16", 2);
	return t;
}

START_TEST(test_order_nested)
{
	struct nettable *t = nested_table();

	ck_assert_uint_eq(nettable_size(t), 8);
	ck_assert_walk(t, "10.1.2.3", "3 5 7 12 15 20 30 40");
	ck_assert_walk(t, "10.1.2.4", "3 5 7 12 15 20 40");
	ck_assert_walk(t, "10.1.9.9", "3 5 12 15 20 40");
	ck_assert_walk(t, "10.2.0.1", "2 5 15 20 40");
	ck_assert_walk(t, "10.3.0.1", "5 15 20 40");
	ck_assert_walk(t, "192.168.1.1", "1 15 40");
	ck_assert_walk(t, "11.0.0.1", "15 40");
	ck_assert_walk(t, "2001:db8::1", "40");
	nettable_free(t);
}
END_TEST

START_TEST(test_order_from_skips)
{
	struct nettable *t = nested_table();
	struct netaddr a = addr("10.1.2.3");
	unsigned found = 0;

	ck_assert(nettable_first_from(t, &a, 4, &found));
	ck_assert_uint_eq(found, 5);
	ck_assert(nettable_first_from(t, &a, 8, &found));
	ck_assert_uint_eq(found, 12);
	ck_assert(nettable_first_from(t, &a, 12, &found));
	ck_assert_uint_eq(found, 12);
	ck_assert(nettable_first_from(t, &a, 31, &found));
	ck_assert_uint_eq(found, 40);
	ck_assert(!nettable_first_from(t, &a, 41, &found));
	ck_assert(!nettable_first_from(t, &a, UINT_MAX, &found));
	ck_assert_uint_eq(found, 40);
	nettable_free(t);
}
END_TEST

START_TEST(test_order_insertion_independent)
{
	/* Longest first, then shortest first: same answers. */
	struct nettable *a = nettable_new(), *b = nettable_new();

	add(a, "2001:db8:1:2::/64", 4);
	add(a, "2001:db8:1::/48", 3);
	add(a, "2001:db8::/32", 2);
	add(a, "2000::/3", 1);
	add(b, "2000::/3", 1);
	add(b, "2001:db8::/32", 2);
	add(b, "2001:db8:1::/48", 3);
	add(b, "2001:db8:1:2::/64", 4);
	ck_assert_walk(a, "2001:db8:1:2::9", "1 2 3 4");
	ck_assert_walk(b, "2001:db8:1:2::9", "1 2 3 4");
	ck_assert_walk(a, "2001:db8:1:3::9", "1 2 3");
	ck_assert_walk(b, "2001:db8:1:3::9", "1 2 3");
	ck_assert_walk(a, "2001:db9::", "1");
	ck_assert_walk(b, "2001:db9::", "1");
	nettable_free(a);
	nettable_free(b);
}
END_TEST

START_TEST(test_same_value_twice)
{
	struct nettable *t = nettable_new();

	add(t, "10.0.0.0/8", 4);
	add(t, "10.0.0.0/8", 4);
	add(t, "::ffff:10.0.0.0/104", 4); /* the same prefix, written as IPv6 */
	ck_assert_uint_eq(nettable_size(t), 1);
	ck_assert_walk(t, "10.9.9.9", "4");
	add(t, "10.0.0.0/8", 2);
	add(t, "10.0.0.0/8", 4);
	add(t, "10.0.0.0/8", 2);
	ck_assert_uint_eq(nettable_size(t), 1);
	ck_assert_walk(t, "10.9.9.9", "2 4");
	nettable_free(t);
}
END_TEST

START_TEST(test_same_value_nested)
{
	/* One value under two nested prefixes is still reported once. */
	struct nettable *t = nettable_new();

	add(t, "10.0.0.0/8", 6);
	add(t, "10.1.0.0/16", 6);
	ck_assert_uint_eq(nettable_size(t), 2);
	ck_assert_walk(t, "10.1.0.1", "6");
	nettable_free(t);
}
END_TEST

START_TEST(test_branch_point_becomes_prefix)
{
	struct nettable *t = nettable_new();

	/* Two siblings make an internal split at 10.0.0.0/23 ... */
	add(t, "10.0.0.0/24", 1);
	add(t, "10.0.1.0/24", 2);
	ck_assert_uint_eq(nettable_size(t), 2);
	ck_assert_walk(t, "10.0.0.5", "1");
	ck_assert_walk(t, "10.0.1.5", "2");
	ck_assert_walk(t, "10.0.2.5", "");
	/* ... which only matches once it is stored itself. */
	add(t, "10.0.0.0/23", 3);
	ck_assert_uint_eq(nettable_size(t), 3);
	ck_assert_walk(t, "10.0.0.5", "1 3");
	ck_assert_walk(t, "10.0.1.5", "2 3");
	ck_assert_walk(t, "10.0.2.5", "");
	nettable_free(t);
}
END_TEST

START_TEST(test_many_values)
{
	struct nettable *t = nettable_new();
	struct netprefix p = prefix("192.0.2.0/24");
	struct netaddr a = addr("192.0.2.200");
	unsigned found;

	/* Multiples of 3 below 300, added in a scrambled order. */
	for (unsigned i = 0; i < 100; i++)
		ck_assert_int_eq(nettable_add(t, &p, (i * 37 % 100) * 3), 0);
	ck_assert_uint_eq(nettable_size(t), 1);
	for (unsigned from = 0; from <= 297; from++) {
		ck_assert(nettable_first_from(t, &a, from, &found));
		ck_assert_uint_eq(found, (from + 2) / 3 * 3);
	}
	ck_assert(!nettable_first_from(t, &a, 298, &found));
	nettable_free(t);
}
END_TEST

START_TEST(test_extreme_values)
{
	struct nettable *t = nettable_new();

	add(t, "::/0", UINT_MAX);
	add(t, "::1", 0);
	ck_assert_walk(t, "::1", "0 4294967295");
	ck_assert_walk(t, "::2", "4294967295");
	nettable_free(t);
}
END_TEST

START_TEST(test_add_rejects_bad_length)
{
	struct nettable *t = nettable_new();
	struct netprefix p = prefix("::1");

	p.len = 129;
	ck_assert_int_eq(nettable_add(t, &p, 1), -1);
	ck_assert_uint_eq(nettable_size(t), 0);
	nettable_free(t);
}
END_TEST

START_TEST(test_add_masks_host_bits)
{
	/* A hand-built prefix with host bits still behaves as its network. */
	struct nettable *t = nettable_new();
	struct netprefix p = prefix("10.1.2.3");

	p.len = 104;
	ck_assert_int_eq(nettable_add(t, &p, 1), 0);
	ck_assert_walk(t, "10.200.0.1", "1");
	nettable_free(t);
}
END_TEST

/*
 * Prefixes at the edges of the first 16 bits of IPv4 and IPv6 (where the
 * table starts its walks) and above the IPv4 space, added in both orders.
 */
static const struct {
	const char *prefix;
	unsigned value;
} edge_prefixes[] = {
	{ "::/80", 1 },       /* above ::ffff:0:0/96, so it holds all of IPv4 */
	{ "0.0.0.0/0", 2 },
	{ "10.0.0.0/15", 3 },
	{ "10.0.0.0/16", 4 },
	{ "10.0.0.0/17", 5 },
	{ "2000::/15", 6 },
	{ "2001::/16", 7 },
	{ "2001::/17", 8 },
	{ "2000::/3", 9 },
	{ "::ffff:10.0.0.0/111", 10 }, /* 10.0.0.0/15 again */
};

static void check_edges(const struct nettable *t)
{
	ck_assert_uint_eq(nettable_size(t), 9);
	ck_assert_walk(t, "10.0.0.1", "1 2 3 4 5 10");
	ck_assert_walk(t, "10.0.128.1", "1 2 3 4 10");
	ck_assert_walk(t, "10.1.0.1", "1 2 3 10");
	ck_assert_walk(t, "10.2.0.1", "1 2");
	ck_assert_walk(t, "9.255.255.255", "1 2");
	ck_assert_walk(t, "::1", "1");
	ck_assert_walk(t, "::1:0:0:1", "");
	ck_assert_walk(t, "2001::1", "6 7 8 9");
	ck_assert_walk(t, "2001:8000::1", "6 7 9");
	ck_assert_walk(t, "2000::1", "6 9");
	ck_assert_walk(t, "2002::1", "9");
	ck_assert_walk(t, "4000::1", "");
}

START_TEST(test_edges_forward)
{
	struct nettable *t = nettable_new();

	for (size_t i = 0; i < sizeof edge_prefixes / sizeof edge_prefixes[0]; i++)
		add(t, edge_prefixes[i].prefix, edge_prefixes[i].value);
	check_edges(t);
	nettable_free(t);
}
END_TEST

START_TEST(test_edges_backward)
{
	struct nettable *t = nettable_new();

	for (size_t i = sizeof edge_prefixes / sizeof edge_prefixes[0]; i-- > 0;)
		add(t, edge_prefixes[i].prefix, edge_prefixes[i].value);
	check_edges(t);
	nettable_free(t);
}
END_TEST

START_TEST(test_short_prefix_added_last)
{
	/* A wide prefix with the smallest value arrives after many narrow ones. */
	struct nettable *t = nettable_new();
	char text[32];

	for (unsigned i = 0; i < 256; i++) {
		snprintf(text, sizeof text, "10.%u.0.0/16", i);
		add(t, text, 100 + i);
		snprintf(text, sizeof text, "10.%u.%u.0/24", i, i);
		add(t, text, 1000 + i);
	}
	ck_assert_walk(t, "10.7.7.7", "107 1007");
	add(t, "0.0.0.0/0", 5);
	add(t, "10.0.0.0/8", 50);
	add(t, "::/0", 1);
	ck_assert_uint_eq(nettable_size(t), 515);
	ck_assert_walk(t, "10.7.7.7", "1 5 50 107 1007");
	ck_assert_walk(t, "10.7.8.7", "1 5 50 107");
	ck_assert_walk(t, "11.7.7.7", "1 5");
	ck_assert_walk(t, "2001:db8::", "1");
	nettable_free(t);
}
END_TEST

/* ---- randomized cross-check against a linear scan ----------------------- */

#define RAND_PREFIXES 2000
#define RAND_ADDRS 20000
#define RAND_VALUES 500

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64: small, seedable, good enough for test data. */
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static unsigned rng_below(uint64_t *s, unsigned n)
{
	return (unsigned)(rng_next(s) % n);
}

static void rng_fill(uint64_t *s, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)rng_next(s);
}

/* The naive reference: bytes compared one by one, no shared code. */
static bool naive_contains(const struct netprefix *p, const struct netaddr *a)
{
	unsigned full = p->len / 8, rest = p->len % 8;

	if (memcmp(p->addr.b, a->b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((p->addr.b[full] ^ a->b[full]) & (0xff00u >> rest)) == 0;
}

static void zero_host_bits(struct netprefix *p)
{
	for (unsigned i = 0; i < 16; i++) {
		if (p->len <= i * 8)
			p->addr.b[i] = 0;
		else if (p->len < i * 8 + 8)
			p->addr.b[i] &= (unsigned char)(0xff00u >> (p->len - i * 8));
	}
}

struct entry {
	struct netprefix p;
	unsigned value;
};

/* Random prefixes of every kind, many of them nested or repeated. */
static void random_prefix(uint64_t *s, const struct entry *prev, size_t nprev,
			  struct netprefix *p)
{
	static const unsigned char bases[4][4] = {
		{ 0x20, 0x01, 0x0d, 0xb8 }, { 0x20, 0x01, 0x0d, 0xb9 },
		{ 0xfe, 0x80, 0x00, 0x00 }, { 0x2a, 0x00, 0x14, 0x50 },
	};
	unsigned kind = rng_below(s, nprev ? 6 : 4);

	rng_fill(s, p->addr.b, 16);
	switch (kind) {
	case 0: /* IPv4, mostly /8../32 */
		memset(p->addr.b, 0, 10);
		p->addr.b[10] = p->addr.b[11] = 0xff;
		p->len = 96 + (rng_below(s, 8) ? 8 + rng_below(s, 25) : rng_below(s, 33));
		break;
	case 1: /* IPv6 under a few busy /32s */
		memcpy(p->addr.b, bases[rng_below(s, 4)], 4);
		p->len = 16 + rng_below(s, 113);
		break;
	case 2: /* IPv6 anywhere; at least /8 so some addresses match nothing */
		p->len = 8 + rng_below(s, 121);
		break;
	case 3: /* IPv4 in a small corner, so prefixes collide */
		memset(p->addr.b, 0, 10);
		p->addr.b[10] = p->addr.b[11] = 0xff;
		p->addr.b[12] = 10;
		p->addr.b[13] = (unsigned char)rng_below(s, 4);
		p->len = 96 + 8 + rng_below(s, 25);
		break;
	case 4: /* an earlier prefix again */
		*p = prev[rng_below(s, (unsigned)nprev)].p;
		break;
	default: { /* inside or around an earlier prefix */
		const struct netprefix *q = &prev[rng_below(s, (unsigned)nprev)].p;
		unsigned len = q->len, keep = len / 8, rest = len % 8;
		/* IPv4 stays IPv4: ::/n above every v4 client would flood them. */
		unsigned low = len >= 96 && netaddr_is_v4(&q->addr) ? 96 : 8;

		memcpy(p->addr.b, q->addr.b, keep);
		if (rest)
			p->addr.b[keep] = (unsigned char)((q->addr.b[keep] & (0xff00u >> rest)) |
							  (p->addr.b[keep] & (0xffu >> rest)));
		if (rng_below(s, 2))
			p->len = len + rng_below(s, 129 - len);
		else
			p->len = low + rng_below(s, len - low + 1);
		break;
	}
	}
	zero_host_bits(p);
}

/* An address: random, or inside a stored prefix (so most of them match). */
static void random_addr(uint64_t *s, const struct entry *e, size_t n, struct netaddr *a)
{
	unsigned kind = rng_below(s, 8);

	rng_fill(s, a->b, 16);
	if (kind == 0) {
		memset(a->b, 0, 10);
		a->b[10] = a->b[11] = 0xff;
	} else if (kind >= 2) {
		const struct netprefix *p = &e[rng_below(s, (unsigned)n)].p;
		unsigned full = p->len / 8, rest = p->len % 8;
		memcpy(a->b, p->addr.b, full);
		if (rest)
			a->b[full] = (unsigned char)(p->addr.b[full] | (a->b[full] & (0xffu >> rest)));
		if (kind == 7 && full < 16)
			memset(a->b + full + (rest != 0), 0, 16 - full - (rest != 0));
	}
}

static int cmp_unsigned(const void *x, const void *y)
{
	unsigned a = *(const unsigned *)x, b = *(const unsigned *)y;

	return (a > b) - (a < b);
}

/* Sorted, distinct values of the entries containing a; returns their count. */
static size_t naive_values(const struct entry *e, size_t n, const struct netaddr *a,
			   unsigned *out)
{
	size_t k = 0, m = 0;

	for (size_t i = 0; i < n; i++)
		if (naive_contains(&e[i].p, a))
			out[k++] = e[i].value;
	qsort(out, k, sizeof *out, cmp_unsigned);
	for (size_t i = 0; i < k; i++)
		if (m == 0 || out[m - 1] != out[i])
			out[m++] = out[i];
	return m;
}

/* The table's answer for (a, from) equals want[] (m sorted values). */
static bool agrees(const struct nettable *t, const struct netaddr *a, unsigned from,
		   const unsigned *want, size_t m)
{
	size_t i = 0;
	unsigned found = 0;
	bool hit;

	while (i < m && want[i] < from)
		i++;
	hit = nettable_first_from(t, a, from, &found);
	return i < m ? hit && found == want[i] : !hit;
}

/*
 * Checks the table against the naive scan for one address: the caller's
 * loop (from = 0, then each found + 1) and one arbitrary starting point.
 * Returns the number of distinct values, or -1 (with *bad_from) on a
 * mismatch.  Plain ifs, not ck_assert: each ck_assert talks to the parent
 * process, which would dominate the run time.
 */
static long check_addr(const struct nettable *t, const struct entry *e, size_t n,
		       const struct netaddr *a, unsigned *want, uint64_t *seed,
		       unsigned *bad_from)
{
	size_t m = naive_values(e, n, a, want);
	unsigned from = 0;

	for (size_t i = 0; i <= m; i++) {
		if (!agrees(t, a, from, want, m)) {
			*bad_from = from;
			return -1;
		}
		if (i < m)
			from = want[i] + 1;
	}
	from = rng_below(seed, RAND_VALUES + 1);
	if (!agrees(t, a, from, want, m)) {
		*bad_from = from;
		return -1;
	}
	return (long)m;
}

START_TEST(test_random_cross_check)
{
	uint64_t seed = UINT64_C(0x6e65746d61746368);
	struct entry *e = calloc(RAND_PREFIXES, sizeof *e);
	unsigned *want = calloc(RAND_PREFIXES, sizeof *want);
	struct nettable *t = nettable_new();
	size_t distinct = 0, matched_any = 0;
	long most = 0;

	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < RAND_PREFIXES; i++) {
		size_t j;

		random_prefix(&seed, e, i, &e[i].p);
		e[i].value = rng_below(&seed, RAND_VALUES);
		if (nettable_add(t, &e[i].p, e[i].value) != 0)
			ck_abort_msg("add %zu failed", i);
		for (j = 0; j < i; j++)
			if (e[j].p.len == e[i].p.len &&
			    memcmp(e[j].p.addr.b, e[i].p.addr.b, 16) == 0)
				break;
		distinct += j == i;
	}
	ck_assert_uint_eq(nettable_size(t), distinct);

	for (size_t k = 0; k < RAND_ADDRS; k++) {
		struct netaddr a;
		unsigned bad_from;
		long m;

		random_addr(&seed, e, RAND_PREFIXES, &a);
		m = check_addr(t, e, RAND_PREFIXES, &a, want, &seed, &bad_from);
		if (m < 0)
			ck_abort_msg("address %zu (%s), from %u: table disagrees",
				     k, format(&a).s, bad_from);
		matched_any += m > 0;
		if (m > most)
			most = m;
	}
	/* The data must exercise misses, hits and deep nesting. */
	ck_assert_uint_gt(matched_any, RAND_ADDRS / 2);
	ck_assert_uint_lt(matched_any, RAND_ADDRS);
	ck_assert_int_ge(most, 5);

	nettable_free(t);
	free(want);
	free(e);
}
END_TEST

/* The same, checked after every single add, to catch upkeep mistakes. */
START_TEST(test_random_incremental)
{
	enum { N = 400, PER_ADD = 20 };
	uint64_t seed = UINT64_C(0x696e6372656d656e);
	struct entry *e = calloc(N, sizeof *e);
	unsigned *want = calloc(N, sizeof *want);
	struct nettable *t = nettable_new();

	ck_assert_ptr_nonnull(e);
	ck_assert_ptr_nonnull(want);
	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < N; i++) {
		random_prefix(&seed, e, i, &e[i].p);
		e[i].value = rng_below(&seed, RAND_VALUES);
		if (nettable_add(t, &e[i].p, e[i].value) != 0)
			ck_abort_msg("add %zu failed", i);
		for (size_t k = 0; k < PER_ADD; k++) {
			struct netaddr a;
			unsigned bad_from;

			random_addr(&seed, e, i + 1, &a);
			if (check_addr(t, e, i + 1, &a, want, &seed, &bad_from) < 0)
				ck_abort_msg("after add %zu, address %s, from %u: table disagrees",
					     i, format(&a).s, bad_from);
		}
	}
	nettable_free(t);
	free(want);
	free(e);
}
END_TEST

/* ---- runner ------------------------------------------------------------- */

static Suite *netmatch_suite(void)
{
	Suite *s = suite_create("netmatch");
	TCase *addr_tc = tcase_create("address");
	TCase *prefix_tc = tcase_create("prefix");
	TCase *contain_tc = tcase_create("containment");
	TCase *table_tc = tcase_create("table");
	TCase *random_tc = tcase_create("random");

	tcase_add_test(addr_tc, test_v4_roundtrip);
	tcase_add_test(addr_tc, test_v4_layout);
	tcase_add_test(addr_tc, test_v6_roundtrip);
	tcase_add_test(addr_tc, test_v6_canonical_form);
	tcase_add_test(addr_tc, test_mapped_is_v4);
	tcase_add_test(addr_tc, test_compat_is_not_v4);
	tcase_add_test(addr_tc, test_addr_rejects);
	tcase_add_test(addr_tc, test_format_small_buffer);
	tcase_add_test(addr_tc, test_format_longest);
	tcase_add_test(addr_tc, test_from_sockaddr);
	suite_add_tcase(s, addr_tc);

	tcase_add_test(prefix_tc, test_prefix_v4);
	tcase_add_test(prefix_tc, test_prefix_v6);
	tcase_add_test(prefix_tc, test_prefix_host);
	tcase_add_test(prefix_tc, test_prefix_mapped);
	tcase_add_test(prefix_tc, test_prefix_why_optional);
	tcase_add_test(prefix_tc, test_err_not_address);
	tcase_add_test(prefix_tc, test_err_bad_length);
	tcase_add_test(prefix_tc, test_err_exceeds_32);
	tcase_add_test(prefix_tc, test_err_exceeds_128);
	tcase_add_test(prefix_tc, test_err_host_bits);
	suite_add_tcase(s, prefix_tc);

	tcase_add_test(contain_tc, test_contain_zero);
	tcase_add_test(contain_tc, test_contain_host);
	tcase_add_test(contain_tc, test_contain_31_127);
	tcase_add_test(contain_tc, test_contain_1);
	tcase_add_test(contain_tc, test_contain_word_edges);
	tcase_add_test(contain_tc, test_v4_rule_matches_mapped_client);
	tcase_add_test(contain_tc, test_v6_rule_skips_v4_client);
	suite_add_tcase(s, contain_tc);

	tcase_add_test(table_tc, test_table_empty);
	tcase_add_test(table_tc, test_order_nested);
	tcase_add_test(table_tc, test_order_from_skips);
	tcase_add_test(table_tc, test_order_insertion_independent);
	tcase_add_test(table_tc, test_same_value_twice);
	tcase_add_test(table_tc, test_same_value_nested);
	tcase_add_test(table_tc, test_branch_point_becomes_prefix);
	tcase_add_test(table_tc, test_many_values);
	tcase_add_test(table_tc, test_extreme_values);
	tcase_add_test(table_tc, test_add_rejects_bad_length);
	tcase_add_test(table_tc, test_add_masks_host_bits);
	tcase_add_test(table_tc, test_edges_forward);
	tcase_add_test(table_tc, test_edges_backward);
	tcase_add_test(table_tc, test_short_prefix_added_last);
	suite_add_tcase(s, table_tc);

	/* Generous: slow under valgrind and sanitizers. */
	tcase_set_timeout(random_tc, 300);
	tcase_add_test(random_tc, test_random_cross_check);
	tcase_add_test(random_tc, test_random_incremental);
	suite_add_tcase(s, random_tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(netmatch_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
