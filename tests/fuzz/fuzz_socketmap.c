/*
 * Fuzz target: the socketmap door (Sendmail's check_vrfy/check_expn), as
 * the door server drives it: the input is one connection's bytes, handed
 * to serve() until it consumes nothing more or closes.  Every answer must
 * be a netstring holding "NOTFOUND ", "PERM bad request" or "OK " and a
 * quoted reply line the policy holds, one per request; audit lines must be
 * well formed; a verb taken as under policy must be exactly a policy verb.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz_audit.h"
#include "running.h"
#include "socketmapdoor.h"
#include "socketmapproto.h"

static const char POLICY[] =
	"commands = { VRFY = { action = \"reject\"; reply = { text = \"VRFY \\\"disabled\\\" by \\\\ policy\"; }; };\n"
	"  EXPN = { action = \"tempfail\"; }; };\n"
	"rules = ( { clients = [ \"127.0.0.2\", \"::1\" ]; action = \"allow\"; } );\n"
	"limits = { probes = 3; window = 600; action = \"disconnect\"; };\n";

static const char *const ANSWERS[] = {
	"NOTFOUND ", "PERM bad request",
	"OK \"502 5.5.1 VRFY \\\"disabled\\\" by \\\\ policy\"",
	"OK \"450 4.7.1 EXPN command temporarily refused\"",
	"OK \"421 4.7.0 too many refused commands, closing connection\"",
};

static size_t check_answers(const char *out, size_t len)
{
	size_t seen = 0;
	while (len > 0) {
		const char *data, *why;
		size_t n;
		ssize_t used = netstring_parse(out, len, &data, &n, &why);
		if (used <= 0)
			abort();
		size_t i = 0;
		while (i < sizeof ANSWERS / sizeof ANSWERS[0] &&
		       (strlen(ANSWERS[i]) != n || memcmp(ANSWERS[i], data, n) != 0))
			i++;
		if (i == sizeof ANSWERS / sizeof ANSWERS[0])
			abort();
		seen++;
		out += used;
		len -= (size_t)used;
	}
	return seen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	if (!ready) {
		running_install(fuzz_load_policy(POLICY));
		ready = true;
	}
	struct outbuf out = { 0 };
	const char *in = (const char *)data;
	size_t len = size, served = 0;
	bool closed = false;
	while (len > 0) {
		int before = fuzz_lines;
		/* the query as the door will see it, to compare with its verdict */
		const char *qdata, *why;
		size_t qlen;
		struct socketmap_query q = { 0 };
		bool parsed = netstring_parse(in, len, &qdata, &qlen, &why) > 0 &&
			      socketmap_query_parse(qdata, qlen, &q, &why) == 0;
		ssize_t n = socketmap_door.serve(in, len, &out, "fuzz");
		if (n < 0) {
			closed = true;
			break;
		}
		if (n == 0)
			break;
		if ((size_t)n > len)
			abort();
		served++;
		if (fuzz_lines > before + 1)
			abort();
		size_t rlen, vlen;
		const char *rule, *verb;
		if (parsed && fuzz_lines == before + 1 &&
		    (rule = fuzz_audit_field(fuzz_log, "rule", &rlen)) != NULL &&
		    !(rlen == 7 && memcmp(rule, "default", 7) == 0)) {
			/* under policy: the client's verb is exactly the policy's, any case */
			verb = fuzz_audit_field(fuzz_log, "verb", &vlen);
			if (verb == NULL || vlen != q.verb_len || strncasecmp(verb, q.verb, vlen) != 0 ||
			    memchr(q.verb, '\0', q.verb_len) != NULL)
				abort();
		}
		in += n;
		len -= (size_t)n;
	}
	size_t answers = check_answers(out.data ? out.data : "", out.len);
	if (answers != served + closed)
		abort();
	free(out.data);
	return 0;
}
