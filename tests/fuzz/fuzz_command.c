/*
 * Fuzz target: the verb/argument parser, the verdict, and the audit line
 * the doors write for it.  Input: one flag byte (client, refused count),
 * then the command line as the MTA hands it over.
 *
 * The audit line must be one line of printable ASCII, parse as key=value
 * pairs, and give back the client's bytes exactly when unescaped.  The
 * seam: fuzz_audit.c defines log_msg(), so audit_emit() writes into a
 * buffer instead of syslog (log.c is not linked).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "fuzz_audit.h"
#include "cmdline.h"
#include "events.h"
#include "policy.h"

static const char POLICY[] =
	"commands = { VRFY = { action = \"reject\"; }; EXPN = { action = \"reject\"; };\n"
	"  TURN = { action = \"tempfail\"; }; ETRN = { action = \"disconnect\"; };\n"
	"  HELP = { action = \"log\"; }; };\n"
	"reply = { code = 550; status = \"5.7.1\"; text = \"100% no $verb, $$5\"; };\n"
	"rules = ( { clients = [ \"127.0.0.0/8\" ]; action = \"allow\"; },\n"
	"  { clients = [ \"2001:db8::/32\" ]; commands = [ \"EXPN\" ]; action = \"tempfail\"; } );\n"
	"limits = { probes = 2; action = \"disconnect\"; };\n";

static struct policy *policy;

/* Undoes audit_escape; returns the length, or -1 when malformed. */
static long unescape(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\') {
			out[o++] = s[i];
			continue;
		}
		if (++i >= n)
			return -1;
		switch (s[i]) {
		case '"': out[o++] = '"'; break;
		case '\\': out[o++] = '\\'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'x': {
			unsigned v;
			if (i + 2 >= n || sscanf(s + i + 1, "%2x", &v) != 1)
				return -1;
			out[o++] = (char)v;
			i += 2;
			break;
		}
		default: return -1;
		}
	}
	return (long)o;
}

/* The escaped form is printable, quoted when it must be, and reversible. */
static void check_escape(const char *value, size_t len)
{
	char out[4 * AUDIT_VALUE_MAX + 16];
	size_t n = audit_escape(out, sizeof out, value, len);
	if (n != strlen(out) || n == 0)
		abort();
	for (size_t i = 0; i < n; i++)
		if (out[i] < 0x20 || out[i] > 0x7e)
			abort();
	bool quoted = out[0] == '"';
	if (quoted && (n < 2 || out[n - 1] != '"'))
		abort();
	const char *body = quoted ? out + 1 : out;
	size_t body_len = quoted ? n - 2 : n;
	bool cut = len > AUDIT_VALUE_MAX;
	if (cut) {
		if (!quoted || body_len < 3 || memcmp(body + body_len - 3, "...", 3) != 0)
			abort();
		body_len -= 3;
	}
	if (!quoted)
		for (size_t i = 0; i < body_len; i++)
			if (body[i] == ' ' || body[i] == '"' || body[i] == '=' || body[i] == '\\')
				abort();
	char back[AUDIT_VALUE_MAX + 1];
	long m = unescape(body, body_len, back);
	size_t kept = cut ? AUDIT_VALUE_MAX : len;
	if (m != (long)kept || memcmp(back, value, kept) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (policy == NULL)
		policy = fuzz_load_policy(POLICY);
	if (size == 0)
		return 0;
	check_escape((const char *)data, size);

	/* The milter door gets a C string: the line ends at the first NUL. */
	char *line = malloc(size);
	memcpy(line, data + 1, size - 1);
	line[size - 1] = '\0';

	struct command_line cmd;
	cmdline_parse(line, &cmd);
	size_t total = strlen(line);
	if (cmd.verb < line || cmd.verb + cmd.verb_len > line + total ||
	    cmd.arg < cmd.verb + cmd.verb_len || cmd.arg + cmd.arg_len > line + total)
		abort();
	for (size_t i = 0; i < cmd.verb_len; i++)
		if (strchr(" \t\r\n", cmd.verb[i]))
			abort();
	if (cmd.arg_len > 0 && (strchr(" \t\r\n", cmd.arg[0]) || strchr(" \t\r\n", cmd.arg[cmd.arg_len - 1])))
		abort();

	static const char *const CLIENTS[] = { "192.0.2.7", "127.0.0.1", "2001:db8::5", NULL };
	struct netaddr addr;
	const char *client = CLIENTS[data[0] & 3];
	if (client != NULL)
		netaddr_parse(client, &addr);
	struct question q = { .verb = cmd.verb, .verb_len = cmd.verb_len,
			      .client = client ? &addr : NULL, .refused = (data[0] >> 2) & 3 };
	struct verdict v;
	policy_decide(policy, &q, &v);

	fuzz_lines = 0;
	event_command(&(struct command_event){
		.queue_id = (data[0] & 0x10) ? "4FzQ1X2abc" : NULL, .door = "milter",
		.session = "1f", .cmd = &cmd, .client = client ? client : "unknown",
		.user = (data[0] & 0x20) ? line : NULL, .verdict = &v,
	});
	if (fuzz_lines != 1)
		abort();

	/* The verb as the policy names it, else the client's bytes, escaped. */
	size_t n;
	const char *verb = fuzz_audit_field(fuzz_log, "verb", &n);
	if (verb == NULL)
		abort();
	char buf[4 * AUDIT_VALUE_MAX + 16];
	if (v.command != NULL)
		audit_escape(buf, sizeof buf, v.command->verb, strlen(v.command->verb));
	else
		audit_escape(buf, sizeof buf, cmd.verb, cmd.verb_len);
	if (strlen(buf) != n || memcmp(buf, verb, n) != 0)
		abort();
	/* An argument is logged only for a verb under policy (AUTH PLAIN ...). */
	const char *arg = fuzz_audit_field(fuzz_log, "arg", &n);
	if ((arg != NULL) != (v.command != NULL && cmd.arg_len > 0))
		abort();
	free(line);
	return 0;
}
