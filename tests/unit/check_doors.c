/* Unit tests: policy-protocol parser, shared probe counting, door sockets. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policyproto.h"
#include "probes.h"
#include "socketmapproto.h"
#include "sockspec.h"

static struct policy_request req;

static ssize_t parse(const char *text, const char **why)
{
	*why = NULL;
	return policy_request_parse(text, strlen(text), &req, why);
}

START_TEST(vrfy_request)
{
	const char *text = "request=smtpd_access_policy\nprotocol_state=VRFY\nprotocol_name=ESMTP\n"
			   "client_address=192.0.2.7\nclient_name=probe.example\nrecipient=root\n"
			   "sasl_username=\ninstance=1.2\n\nrequest=smtpd_access_policy\n";
	const char *why;
	ssize_t n = parse(text, &why);
	ck_assert_int_eq(n, (ssize_t)(strstr(text, "\n\n") - text + 2));
	ck_assert_str_eq(req.protocol_state, "VRFY");
	ck_assert_str_eq(req.client_address, "192.0.2.7");
	ck_assert_str_eq(req.client_name, "probe.example");
	ck_assert_str_eq(req.recipient, "root");
	ck_assert_str_eq(req.sasl_username, "");
	ck_assert_ptr_null(req.etrn_domain);
	/* The rest is the start of the next request: not complete yet. */
	ck_assert_int_eq(parse(text + n, &why), 0);
}
END_TEST

START_TEST(crlf_and_values_with_equals)
{
	const char *why;
	ck_assert_int_gt(parse("request=smtpd_access_policy\r\nprotocol_state=ETRN\r\n"
			       "etrn_domain=a=b\r\n\r\n", &why), 0);
	ck_assert_str_eq(req.protocol_state, "ETRN");
	ck_assert_str_eq(req.etrn_domain, "a=b");
}
END_TEST

START_TEST(incomplete_requests_wait)
{
	const char *why;
	ck_assert_int_eq(parse("", &why), 0);
	ck_assert_int_eq(parse("request=smtpd_access_policy", &why), 0);
	ck_assert_int_eq(parse("request=smtpd_access_policy\nprotocol_state=VRFY\n", &why), 0);
}
END_TEST

static void assert_bad(const char *text, size_t len, const char *reason)
{
	const char *why = NULL;
	ck_assert_int_eq(policy_request_parse(text, len, &req, &why), -1);
	ck_assert_str_eq(why, reason);
}

START_TEST(bad_requests_are_refused)
{
	assert_bad("protocol_state=VRFY\n\n", 21, "no request= attribute");
	assert_bad("request=junk\n\n", 14, "request= is not smtpd_access_policy");
	assert_bad("request=smtpd_access_policy\nnonsense\n\n", 38, "line is not name=value");
	assert_bad("request=smtpd_access_policy\n=x\n\n", 32, "line is not name=value");
	assert_bad("request=smtpd_access_policy\nrecipient=a\0b\n\n", 42, "NUL byte in request");
	assert_bad("\n", 1, "no request= attribute");
}
END_TEST

START_TEST(stated_limits)
{
	/* One line of 2049 bytes fails at once, finished or not. */
	char *text = malloc(POLICY_REQUEST_MAX + 100);
	memset(text, 'x', 2049);
	text[0] = 'a';
	text[1] = '=';
	assert_bad(text, 2049, "line longer than 2048 bytes");
	text[2049] = '\n';
	assert_bad(text, 2050, "line longer than 2048 bytes");
	/* 2048 is fine. */
	const char *why;
	memcpy(text, "recipient=", 10);
	text[2048] = '\n';
	ck_assert_int_eq(policy_request_parse(text, 2049, &req, &why), 0);
	/* Many short lines past the request limit. */
	size_t n = 0;
	while (n < POLICY_REQUEST_MAX + 50) {
		memcpy(text + n, "a=b\n", 4);
		n += 4;
	}
	assert_bad(text, n, "request longer than 16384 bytes");
	free(text);
}
END_TEST

START_TEST(hostile_bytes_do_not_crash)
{
	/* Every byte value in names and values; the parser must just decide. */
	char text[600];
	size_t n = 0;
	n += (size_t)sprintf(text, "request=smtpd_access_policy\nrecipient=");
	for (int c = 1; c < 256; c++)
		if (c != '\n')
			text[n++] = (char)c;
	text[n++] = '\n';
	text[n++] = '\n';
	const char *why;
	ck_assert_int_eq(policy_request_parse(text, n, &req, &why), (ssize_t)n);
	ck_assert_uint_eq(strlen(req.recipient), 254); /* bytes 1..255 less \n */
}
END_TEST

/* Probe counting. */
static struct netaddr addr(const char *text)
{
	struct netaddr a;
	ck_assert_int_eq(netaddr_parse(text, &a), 0);
	return a;
}

START_TEST(counts_within_window)
{
	struct probe_table *t = probe_table_new();
	struct netaddr a = addr("192.0.2.7"), b = addr("2001:db8::7");
	ck_assert_uint_eq(probe_table_count(t, &a, 1000, 600), 0);
	ck_assert_uint_eq(probe_table_add(t, &a, 1000, 600), 1);
	ck_assert_uint_eq(probe_table_add(t, &a, 1100, 600), 2);
	ck_assert_uint_eq(probe_table_add(t, &b, 1100, 600), 1);
	ck_assert_uint_eq(probe_table_count(t, &a, 1599, 600), 2);
	/* The window starts at the first refusal: at +600 it has passed. */
	ck_assert_uint_eq(probe_table_count(t, &a, 1600, 600), 0);
	ck_assert_uint_eq(probe_table_add(t, &a, 1600, 600), 1);
	ck_assert_uint_eq(probe_table_count(t, &b, 1200, 600), 1);
	probe_table_free(t);
}
END_TEST

START_TEST(table_is_bounded)
{
	/* Far more clients than slots: the newest are always counted. */
	struct probe_table *t = probe_table_new();
	struct netaddr a;
	for (unsigned i = 0; i < 2 * PROBE_SLOTS; i++) {
		memset(&a, 0, sizeof a);
		a.b[10] = a.b[11] = 0xff;
		a.b[12] = 10;
		a.b[13] = (unsigned char)(i >> 16);
		a.b[14] = (unsigned char)(i >> 8);
		a.b[15] = (unsigned char)i;
		ck_assert_uint_eq(probe_table_add(t, &a, 1000 + i / 1000, 600), 1);
		ck_assert_uint_eq(probe_table_count(t, &a, 1000 + i / 1000, 600), 1);
	}
	probe_table_free(t);
}
END_TEST

START_TEST(decide_shares_counts_between_doors)
{
	struct policy *p = policy_new();
	/* EXPN and VRFY under policy, probes = 2, window = 600. */
	p->commands = calloc(2, sizeof *p->commands);
	strcpy(p->commands[0].verb, "EXPN");
	p->commands[0].action = ACTION_REJECT;
	strcpy(p->commands[1].verb, "VRFY");
	p->commands[1].action = ACTION_REJECT;
	p->ncommands = 2;
	p->probes = 2;
	p->window = 600;
	struct probe_table *t = probe_table_new();
	struct netaddr a = addr("192.0.2.7");
	struct verdict v;
	/* Two sessions (refused = 0 each), one per door. */
	struct question q = { .verb = "EXPN", .verb_len = 4, .client = &a };
	probes_decide(t, p, &q, 1000, &v);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	q = (struct question){ .verb = "VRFY", .verb_len = 4, .client = &a };
	probes_decide(t, p, &q, 1001, &v);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	q = (struct question){ .verb = "VRFY", .verb_len = 4, .client = &a };
	probes_decide(t, p, &q, 1002, &v);
	ck_assert_int_eq(v.source, SOURCE_LIMIT);
	ck_assert_int_eq(v.action, ACTION_DISCONNECT);
	/* Window 0: only the session's own count matters. */
	p->window = 0;
	q = (struct question){ .verb = "VRFY", .verb_len = 4, .client = &a };
	probes_decide(t, p, &q, 1003, &v);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	probe_table_free(t);
	policy_free(p);
}
END_TEST

/*
 * Sessions of one client refused at the same moment: exactly `probes` of
 * them get the command's reply, the rest the limit (the count and the
 * record are one lock section).  Each round starts the threads together
 * on a fresh client address.
 */
enum { RACE_THREADS = 4, RACE_ROUNDS = 500, RACE_TRIES = 2 };

struct racer {
	struct probe_table *t;
	const struct policy *p;
	pthread_barrier_t *start;
	unsigned commands;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	for (unsigned round = 0; round < RACE_ROUNDS; round++) {
		struct netaddr a = { 0 };
		a.b[14] = (unsigned char)(round >> 8);
		a.b[15] = (unsigned char)round;
		pthread_barrier_wait(r->start);
		for (int i = 0; i < RACE_TRIES; i++) {
			struct question q = { .verb = "VRFY", .verb_len = 4, .client = &a };
			struct verdict v;
			probes_decide(r->t, r->p, &q, 1000, &v);
			if (v.source != SOURCE_LIMIT)
				r->commands++;
		}
	}
	return NULL;
}

START_TEST(simultaneous_sessions_share_one_limit)
{
	struct policy *p = policy_new();
	p->commands = calloc(1, sizeof *p->commands);
	strcpy(p->commands[0].verb, "VRFY");
	p->commands[0].action = ACTION_REJECT;
	p->ncommands = 1;
	p->probes = 3;
	p->window = 600;
	struct probe_table *t = probe_table_new();
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, RACE_THREADS);
	pthread_t threads[RACE_THREADS];
	struct racer racers[RACE_THREADS];
	for (int i = 0; i < RACE_THREADS; i++) {
		racers[i] = (struct racer){ t, p, &start, 0 };
		ck_assert_int_eq(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
	}
	unsigned commands = 0;
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(threads[i], NULL);
		commands += racers[i].commands;
	}
	ck_assert_uint_eq(commands, 3 * RACE_ROUNDS);
	pthread_barrier_destroy(&start);
	probe_table_free(t);
	policy_free(p);
}
END_TEST

START_TEST(socket_specs)
{
	struct sockspec s;
	ck_assert_ptr_null(sockspec_parse("inet:10031@127.0.0.1", &s));
	ck_assert_int_eq(s.family, AF_INET);
	ck_assert_ptr_null(sockspec_parse("inet6:10031@[::1]", &s));
	ck_assert_int_eq(s.family, AF_INET6);
	ck_assert_ptr_null(sockspec_parse("inet:10031@localhost", &s));
	ck_assert_ptr_null(sockspec_parse("unix:/run/milter-cmdgate/policy.sock", &s));
	ck_assert_str_eq(s.path, "/run/milter-cmdgate/policy.sock");
	ck_assert_ptr_null(sockspec_parse("local:/tmp/x", &s));
	ck_assert_str_eq(sockspec_parse("inet:10031", &s),
			 "give the address to listen on, e.g. inet:10031@127.0.0.1");
	ck_assert_str_eq(sockspec_parse("inet:0@127.0.0.1", &s), "bad port");
	ck_assert_str_eq(sockspec_parse("inet:65536@127.0.0.1", &s), "bad port");
	ck_assert_str_eq(sockspec_parse("inet:x@127.0.0.1", &s), "bad port");
	ck_assert_str_eq(sockspec_parse("inet:10031@mail.example", &s), "not a numeric IPv4 address");
	ck_assert_str_eq(sockspec_parse("inet6:10031@[127.0.0.1]", &s), "not a numeric IPv6 address");
	ck_assert_str_eq(sockspec_parse("unix:relative", &s), "a unix socket path must be absolute");
	ck_assert_str_eq(sockspec_parse("tcp:1@x", &s),
			 "expected unix:/path, local:/path, inet:PORT@ADDR or inet6:PORT@[ADDR]");
}
END_TEST

static ssize_t netstring(const char *text, const char **data, size_t *n, const char **why)
{
	*why = NULL;
	return netstring_parse(text, strlen(text), data, n, why);
}

START_TEST(netstrings)
{
	const char *data, *why;
	size_t n;
	ck_assert_int_eq(netstring("27:cmdgate vrfy/127.0.0.1/root,", &data, &n, &why), 31);
	ck_assert_uint_eq(n, 27);
	ck_assert(strncmp(data, "cmdgate vrfy/127.0.0.1/root", n) == 0);
	ck_assert_int_eq(netstring("0:,", &data, &n, &why), 3);
	ck_assert_uint_eq(n, 0);
	/* Incomplete: wait. */
	ck_assert_int_eq(netstring("", &data, &n, &why), 0);
	ck_assert_int_eq(netstring("27", &data, &n, &why), 0);
	ck_assert_int_eq(netstring("27:cmdgate", &data, &n, &why), 0);
	/* Broken. */
	ck_assert_int_eq(netstring(":x,", &data, &n, &why), -1);
	ck_assert_str_eq(why, "not a netstring");
	ck_assert_int_eq(netstring("x:x,", &data, &n, &why), -1);
	ck_assert_int_eq(netstring("01:x,", &data, &n, &why), -1);
	ck_assert_str_eq(why, "bad netstring length");
	ck_assert_int_eq(netstring("123456:x", &data, &n, &why), -1);
	ck_assert_str_eq(why, "bad netstring length");
	ck_assert_int_eq(netstring("4097:x", &data, &n, &why), -1);
	ck_assert_str_eq(why, "request longer than 4096 bytes");
	ck_assert_int_eq(netstring("1:ab", &data, &n, &why), -1);
	ck_assert_str_eq(why, "netstring does not end with ','");
	char out[16];
	ck_assert_int_eq(netstring_write(out, sizeof out, "NOTFOUND ", 9), 12);
	ck_assert_str_eq(out, "9:NOTFOUND ,");
	ck_assert_int_eq(netstring_write(out, 12, "NOTFOUND ", 9), -1);
}
END_TEST

static void assert_query(const char *text, const char *verb, const char *client, const char *arg)
{
	struct socketmap_query q;
	const char *why = NULL;
	ck_assert_int_eq(socketmap_query_parse(text, strlen(text), &q, &why), 0);
	ck_assert_uint_eq(q.verb_len, strlen(verb));
	ck_assert(strncmp(q.verb, verb, q.verb_len) == 0);
	ck_assert_uint_eq(q.client_len, strlen(client));
	ck_assert(strncmp(q.client, client, q.client_len) == 0);
	ck_assert_uint_eq(q.arg_len, strlen(arg));
	ck_assert(strncmp(q.arg, arg, q.arg_len) == 0);
}

START_TEST(socketmap_keys)
{
	assert_query("cmdgate vrfy/192.0.2.7/root", "vrfy", "192.0.2.7", "root");
	assert_query("cmdgate expn/ipv6:2001:db8::7/staff-list", "expn", "ipv6:2001:db8::7", "staff-list");
	assert_query("cmdgate vrfy/0/a/b c", "vrfy", "0", "a/b c");
	assert_query("cmdgate vrfy//", "vrfy", "", "");
	struct socketmap_query q;
	const char *why;
	ck_assert_int_eq(socketmap_query_parse("other vrfy/1/2", 14, &q, &why), -1);
	ck_assert_str_eq(why, "unknown map name (expected \"cmdgate KEY\")");
	ck_assert_int_eq(socketmap_query_parse("cmdgate", 7, &q, &why), -1);
	ck_assert_int_eq(socketmap_query_parse("cmdgate vrfy/1", 14, &q, &why), -1);
	ck_assert_str_eq(why, "key is not verb/client/argument");
	ck_assert_int_eq(socketmap_query_parse("cmdgate /1/x", 12, &q, &why), -1);
	ck_assert_int_eq(socketmap_query_parse("cmdgate vrfy/1/a\0b", 18, &q, &why), -1);
	ck_assert_str_eq(why, "NUL byte in key");
}
END_TEST

START_TEST(socketmap_values)
{
	char out[16];
	ck_assert_int_eq(socketmap_quote("502 5.5.1 x", out, sizeof out), 13);
	ck_assert_str_eq(out, "\"502 5.5.1 x\"");
	/* Sendmail strips one backslash before '"' and '\\' in a quoted token. */
	ck_assert_int_eq(socketmap_quote("a\"b\\c", out, sizeof out), 9);
	ck_assert_str_eq(out, "\"a\\\"b\\\\c\"");
	ck_assert_int_eq(socketmap_quote("", out, sizeof out), 2);
	ck_assert_str_eq(out, "\"\"");
	/* Exactly full, one byte short, and an escape that does not fit. */
	ck_assert_int_eq(socketmap_quote("abcd", out, 7), 6);
	ck_assert_int_eq(socketmap_quote("abcd", out, 6), -1);
	ck_assert_int_eq(socketmap_quote("abc\"", out, 7), -1);
	ck_assert_int_eq(socketmap_quote("abc\"", out, 8), 7);
	ck_assert_int_eq(socketmap_quote("a", out, 2), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("doors");
	TCase *proto = tcase_create("policy protocol");
	tcase_add_test(proto, vrfy_request);
	tcase_add_test(proto, crlf_and_values_with_equals);
	tcase_add_test(proto, incomplete_requests_wait);
	tcase_add_test(proto, bad_requests_are_refused);
	tcase_add_test(proto, stated_limits);
	tcase_add_test(proto, hostile_bytes_do_not_crash);
	suite_add_tcase(s, proto);
	TCase *probes = tcase_create("probes");
	tcase_set_timeout(probes, 60); /* shared CI machines can be loaded */
	tcase_add_test(probes, counts_within_window);
	tcase_add_test(probes, table_is_bounded);
	tcase_add_test(probes, decide_shares_counts_between_doors);
	tcase_add_test(probes, simultaneous_sessions_share_one_limit);
	suite_add_tcase(s, probes);
	TCase *socketmap = tcase_create("socketmap");
	tcase_add_test(socketmap, netstrings);
	tcase_add_test(socketmap, socketmap_keys);
	tcase_add_test(socketmap, socketmap_values);
	suite_add_tcase(s, socketmap);
	TCase *sockets = tcase_create("sockets");
	tcase_add_test(sockets, socket_specs);
	suite_add_tcase(s, sockets);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
