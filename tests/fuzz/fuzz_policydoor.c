/*
 * Fuzz target: the policy-delegation door (Postfix check_policy_service),
 * as the door server drives it: the input is what a client writes on one
 * connection, handed to the door's serve() until it consumes nothing more
 * or closes.  Every answer must be "action=DUNNO" or "action=" and a whole
 * reply line the policy holds, each followed by an empty line, one per
 * request served; every audit line must be well formed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_audit.h"
#include "policydoor.h"
#include "running.h"

static const char POLICY[] =
	"commands = { VRFY = { action = \"reject\"; reply = { text = \"VRFY disabled by policy\"; }; };\n"
	"  ETRN = { action = \"tempfail\"; }; EXPN = { action = \"reject\"; }; };\n"
	"rules = ( { clients = [ \"127.0.0.2\" ]; action = \"allow\"; },\n"
	"  { users = [ \"monitor\" ]; commands = [ \"VRFY\" ]; action = \"log\"; } );\n"
	"limits = { probes = 3; window = 600; action = \"disconnect\"; };\n";

static const char *const ANSWERS[] = {
	"DUNNO", "502 5.5.1 VRFY disabled by policy", "450 4.7.1 ETRN command temporarily refused",
	"421 4.7.0 too many refused commands, closing connection",
};

static void check_answers(const char *out, size_t len, size_t count)
{
	size_t seen = 0;
	const char *p = out, *end = out + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL || nl + 1 >= end || nl[1] != '\n' || strncmp(p, "action=", 7) != 0)
			abort();
		size_t n = (size_t)(nl - p) - 7, i = 0;
		while (i < sizeof ANSWERS / sizeof ANSWERS[0] &&
		       (strlen(ANSWERS[i]) != n || memcmp(ANSWERS[i], p + 7, n) != 0))
			i++;
		if (i == sizeof ANSWERS / sizeof ANSWERS[0])
			abort();
		seen++;
		p = nl + 2;
	}
	if (seen != count)
		abort();
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
	while (len > 0) {
		int before = fuzz_lines;
		ssize_t n = policy_door.serve(in, len, &out, "fuzz");
		if (n <= 0)
			break;
		if ((size_t)n > len)
			abort();
		served++;
		/* one audit line per VRFY or ETRN, none for other requests */
		if (fuzz_lines > before + 1)
			abort();
		size_t vlen;
		if (fuzz_lines == before + 1 &&
		    (fuzz_audit_field(fuzz_log, "verb", &vlen) == NULL ||
		     fuzz_audit_field(fuzz_log, "rule", &vlen) == NULL))
			abort();
		in += n;
		len -= (size_t)n;
	}
	check_answers(out.data ? out.data : "", out.len, served);
	free(out.data);
	return 0;
}
