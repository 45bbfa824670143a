/* Unit tests: policy file loading, its validation errors, and verdicts. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "policy.h"

static char path[64];

/* Writes text to a temp file and loads it; on failure *err holds the message. */
static struct policy *load_text(const char *text, struct config_error *err)
{
	strcpy(path, "/tmp/check_policy.XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct policy *p = config_load(path, err);
	unlink(path);
	return p;
}

/* Asserts that text fails with "LINE: message" after the file name. */
static void assert_error(const char *text, int line, const char *message)
{
	struct config_error err;
	struct policy *p = load_text(text, &err);
	ck_assert_ptr_null(p);
	ck_assert_str_eq(err.file, path);
	ck_assert_int_eq(err.line, line);
	ck_assert_str_eq(err.message, message);
}

static struct policy *load_ok(const char *text)
{
	struct config_error err;
	struct policy *p = load_text(text, &err);
	if (p == NULL)
		ck_abort_msg("%s:%d: %s", err.file, err.line, err.message);
	return p;
}

static const char BASE[] =
	"commands = { VRFY = { action = \"reject\"; }; EXPN = { action = \"reject\"; };\n"
	"             TURN = { action = \"tempfail\"; }; ETRN = { action = \"disconnect\"; }; };\n";

START_TEST(shipped_policy_loads)
{
	struct config_error err;
	struct policy *p = config_load(CONF_DIR "/milter-cmdgate.conf", &err);
	if (p == NULL)
		ck_abort_msg("%s:%d: %s", err.file, err.line, err.message);
	ck_assert_uint_eq(p->ncommands, 3);
	ck_assert_uint_eq(p->nrules, 2);
	ck_assert_uint_eq(p->probes, 3);
	ck_assert_int_eq(p->mode, MODE_ENFORCE);
	ck_assert_str_eq(p->socket, "unix:/run/milter-cmdgate/milter.sock");
	ck_assert_uint_eq(p->socket_mode, 0660);
	ck_assert_uint_eq(p->window, 600);
	ck_assert_str_eq(p->policy_socket, "inet:10031@127.0.0.1");
	ck_assert_str_eq(p->socketmap_socket, "inet:10032@127.0.0.1");
	policy_free(p);
}
END_TEST

START_TEST(defaults_without_settings)
{
	struct policy *p = load_ok("# nothing\n");
	ck_assert_uint_eq(p->ncommands, 0);
	ck_assert_str_eq(p->banner, "$j ESMTP $v");
	ck_assert_int_eq(p->reject_reply.code, 502);
	ck_assert_str_eq(p->reject_reply.status, "5.5.1");
	ck_assert_str_eq(p->reject_reply.text, "$verb command not implemented");
	policy_free(p);
}
END_TEST

START_TEST(missing_file)
{
	struct config_error err;
	ck_assert_ptr_null(config_load("/nonexistent/cmdgate.conf", &err));
	char text[600];
	config_error_format(&err, text, sizeof text);
	ck_assert_str_eq(text, "/nonexistent/cmdgate.conf: cannot read: No such file or directory");
}
END_TEST

START_TEST(syntax_error_has_line)
{
	assert_error("mode = \"enforce\";\n\nrules = ( { action = \"allow\" }\n", 4,
		     "syntax error: syntax error");
	/* Found by fuzz_config: libconfig 1.5 leaks the string (tests/fuzz/lsan.supp). */
	assert_error("\"\"\n", 1, "syntax error: syntax error");
	assert_error("mode \"enforce\";\n", 1, "syntax error: syntax error");
}
END_TEST

START_TEST(errors_name_line_and_setting)
{
	assert_error("mode = \"enforce\";\nbogus = 1;\n", 2, "bogus: unknown setting");
	assert_error("mode = \"strict\";\n", 1, "mode: unknown mode \"strict\" (enforce, audit)");
	assert_error("mode = 1;\n", 1, "mode: expected a string");
	assert_error("syslog_facility = \"mial\";\n", 1,
		     "syslog_facility: unknown facility \"mial\" (mail, daemon, user, local0 ... local7)");
	assert_error("socket_mode = \"0999\";\n", 1, "socket_mode: \"0999\" is not an octal mode like \"0660\"");
	assert_error("banner = \"$j ESMTP ${v\";\n", 1,
		     "banner: bad macro reference (use $j, ${daemon_name} or $$)");
	assert_error("reply = { code = 502; status = \"4.5.1\"; text = \"x\"; };\n", 1,
		     "reply.status: class of \"4.5.1\" does not match code 502");
	assert_error("reply = { code = 450; };\n", 1,
		     "reply.code: 450 is not a 5xx code, as action reject needs");
	assert_error("reply = { status = \"5.5\"; };\n", 1,
		     "reply.status: \"5.5\" is not an enhanced status code like 5.5.1");
	assert_error("reply = { text = \"a\\nb\"; };\n", 1, "reply.text: contains CR or LF");
	assert_error("reply = { text = \"a\\rb\"; };\n", 1, "reply.text: contains CR or LF");
	assert_error("reply = { text = \"a\\x01b\"; };\n", 1, "reply.text: contains a control character");
	assert_error("reply = { text = \"caf\\xc3\\xa9\"; };\n", 1, "reply.text: is not ASCII");
	assert_error("reply = { text = \"$client said\"; };\n", 1,
		     "reply.text: names an unknown variable (only $verb and $$)");
	assert_error("reply = { text = \"\"; };\n", 1, "reply.text: is empty");
	assert_error("reply = { colour = \"red\"; };\n", 1, "reply.colour: unknown setting");
	assert_error("reply = { code = \"502\"; };\n", 1, "reply.code: expected an integer");
}
END_TEST

START_TEST(command_errors)
{
	assert_error("commands = {\n VRFY = { };\n};\n", 2, "commands.VRFY.action: missing");
	assert_error("commands = {\n VRFY = { action = \"deny\"; };\n};\n", 2,
		     "commands.VRFY.action: unknown action \"deny\" (reject, tempfail, disconnect, allow, log)");
	assert_error("commands = { VRFY = { action = \"reject\"; }; vrfy = { action = \"allow\"; }; };\n", 1,
		     "commands.vrfy: verb listed twice");
	assert_error("commands = { ABCDEFGHIJKLMNOPQ = { action = \"reject\"; }; };\n", 1,
		     "commands.ABCDEFGHIJKLMNOPQ: verb longer than 16 characters");
	assert_error("commands = { X_Y = { action = \"reject\"; }; };\n", 1,
		     "commands.X_Y: a verb has only letters and digits");
	assert_error("commands = { TURN = { action = \"tempfail\"; reply = { code = 421; }; }; };\n", 1,
		     "commands.TURN.reply.code: 421 is not a 4xx code other than 421, as action tempfail needs (421 is action disconnect)");
	assert_error("commands = { TURN = { action = \"disconnect\"; reply = { code = 450; status = \"4.7.0\"; }; }; };\n", 1,
		     "commands.TURN.reply.code: 450 is not 421, as action disconnect needs");
	assert_error("commands = { TURN = { action = \"allow\"; reply = { code = 502; }; }; };\n", 1,
		     "commands.TURN.reply: action allow sends no reply");
}
END_TEST

START_TEST(rule_errors)
{
	char text[1024];
	snprintf(text, sizeof text, "%srules = (\n { clients = [ \"10.0.0.0/33\" ]; action = \"allow\"; }\n);\n", BASE);
	assert_error(text, 4, "rule 1: clients: \"10.0.0.0/33\": prefix length exceeds 32");
	snprintf(text, sizeof text, "%srules = (\n { action = \"allow\"; },\n { clients = [ \"::1/129\" ]; action = \"allow\"; }\n);\n", BASE);
	assert_error(text, 5, "rule 2: clients: \"::1/129\": prefix length exceeds 128");
	snprintf(text, sizeof text, "%srules = ( { clients = [ \"10.0.0.1/8\" ]; action = \"allow\"; } );\n", BASE);
	assert_error(text, 3, "rule 1: clients: \"10.0.0.1/8\": host bits set");
	snprintf(text, sizeof text, "%srules = ( { clients = [ \"mx.example.com\" ]; action = \"allow\"; } );\n", BASE);
	assert_error(text, 3, "rule 1: clients: \"mx.example.com\": not an IP address");
	snprintf(text, sizeof text, "%srules = ( { commands = [ \"XFOO\" ]; action = \"allow\"; } );\n", BASE);
	assert_error(text, 3, "rule 1: commands: \"XFOO\" is not under policy: add it to commands");
	snprintf(text, sizeof text, "%srules = ( { clients = [ ]; action = \"allow\"; } );\n", BASE);
	assert_error(text, 3, "rule 1: clients: empty list (leave the setting out to match any)");
	snprintf(text, sizeof text, "%srules = ( { clients = \"10.0.0.0/8\"; action = \"allow\"; } );\n", BASE);
	assert_error(text, 3, "rule 1: clients: expected a list of strings [ \"...\", ... ]");
	snprintf(text, sizeof text, "%srules = ( { action = \"allow\"; when = \"now\"; } );\n", BASE);
	assert_error(text, 3, "rule 1: when: unknown setting");
	snprintf(text, sizeof text, "%srules = ( { action = \"reject\"; reply = { code = 450; }; } );\n", BASE);
	assert_error(text, 3, "rule 1: reply.code: 450 is not a 5xx code, as action reject needs");
	snprintf(text, sizeof text, "%srules = ( { clients = [ \"::1\" ]; } );\n", BASE);
	assert_error(text, 3, "rule 1: action: missing");
	snprintf(text, sizeof text, "%srules = { };\n", BASE);
	assert_error(text, 3, "rules: expected a list ( { ... }, { ... } )");
}
END_TEST

START_TEST(limit_errors)
{
	assert_error("limits = { window = -5; };\n", 1,
		     "limits.window: -5 is out of range (0 = per session, at most 604800 s)");
	assert_error("limits = { window = \"10m\"; };\n", 1, "limits.window: expected an integer (seconds)");
	assert_error("policy_socket = \"inet:10031\";\n", 1,
		     "policy_socket: \"inet:10031\": give the address to listen on, e.g. inet:10031@127.0.0.1");
	assert_error("limits = { probes = -1; };\n", 1, "limits.probes: -1 is out of range (0 = no limit)");
	assert_error("limits = { action = \"allow\"; };\n", 1,
		     "limits.action: must refuse (reject, tempfail, disconnect)");
}
END_TEST

START_TEST(reply_length_counts_doubled_percent)
{
	/* 980 - "502 5.5.1 " = 970 characters; each % counts twice. */
	char text[2200];
	char body[1100];
	memset(body, 'a', 970);
	body[970] = '\0';
	snprintf(text, sizeof text, "reply = { text = \"%s\"; };\n", body);
	policy_free(load_ok(text));
	body[0] = '%';
	snprintf(text, sizeof text, "reply = { text = \"%s\"; };\n", body);
	assert_error(text, 1, "reply.text: too long: the reply must fit in 980 characters, each % counting twice");
}
END_TEST

/* Decision helpers. */
static struct verdict decide(const struct policy *p, const char *verb, const char *client,
			     const char *user, unsigned refused)
{
	struct netaddr a;
	if (client != NULL)
		ck_assert_int_eq(netaddr_parse(client, &a), 0);
	struct question q = { .verb = verb, .verb_len = strlen(verb),
			      .client = client ? &a : NULL, .user = user, .refused = refused };
	struct verdict v;
	policy_decide(p, &q, &v);
	return v;
}

static const char RULES[] =
	"rules = (\n"
	"  { clients = [ \"127.0.0.0/8\", \"::1\" ]; action = \"allow\"; },\n"
	"  { clients = [ \"192.0.2.0/24\", \"2001:db8::/32\" ]; commands = [ \"VRFY\" ]; action = \"allow\"; },\n"
	"  { users = [ \"monitor\" ]; action = \"log\"; },\n"
	"  { clients = [ \"192.0.2.128/25\" ]; action = \"reject\"; reply = { code = 550; status = \"5.7.1\"; text = \"no $verb for you\"; }; },\n"
	"  { clients = [ \"198.51.100.0/24\" ]; commands = [ \"expn\" ]; action = \"tempfail\"; }\n"
	");\n"
	"limits = { probes = 2; action = \"disconnect\"; reply = { text = \"bye\"; }; };\n";

static struct policy *rules_policy(void)
{
	char text[2048];
	snprintf(text, sizeof text, "%s%s", BASE, RULES);
	return load_ok(text);
}

START_TEST(verb_not_under_policy_is_default_allow)
{
	struct policy *p = rules_policy();
	struct verdict v = decide(p, "XFOO", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_DEFAULT);
	ck_assert_int_eq(v.action, ACTION_ALLOW);
	ck_assert_ptr_null(v.command);
	ck_assert_ptr_null(v.reply);
	v = decide(p, "VRFYX", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_DEFAULT);
	v = decide(p, "", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_DEFAULT);
	policy_free(p);
}
END_TEST

START_TEST(command_action_for_strangers)
{
	struct policy *p = rules_policy();
	struct verdict v = decide(p, "expn", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	ck_assert_int_eq(v.action, ACTION_REJECT);
	ck_assert_str_eq(v.command->verb, "EXPN");
	ck_assert_int_eq(v.reply->code, 502);
	ck_assert(v.enforced);
	v = decide(p, "Turn", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.action, ACTION_TEMPFAIL);
	ck_assert_int_eq(v.reply->code, 450);
	ck_assert_str_eq(v.reply->status, "4.7.1");
	v = decide(p, "ETRN", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.action, ACTION_DISCONNECT);
	ck_assert_int_eq(v.reply->code, 421);
	v = decide(p, "EXPN", NULL, NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	policy_free(p);
}
END_TEST

START_TEST(first_matching_rule_wins)
{
	struct policy *p = rules_policy();
	struct verdict v = decide(p, "EXPN", "127.0.0.1", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_RULE);
	ck_assert_uint_eq(v.rule, 1);
	ck_assert_int_eq(v.action, ACTION_ALLOW);
	v = decide(p, "EXPN", "::1", NULL, 0);
	ck_assert_uint_eq(v.rule, 1);
	v = decide(p, "EXPN", "::ffff:127.0.0.9", NULL, 0);
	ck_assert_uint_eq(v.rule, 1);
	/* 192.0.2.200: rule 2 names only VRFY; rule 4 takes EXPN. */
	v = decide(p, "VRFY", "192.0.2.200", NULL, 0);
	ck_assert_uint_eq(v.rule, 2);
	v = decide(p, "EXPN", "192.0.2.200", NULL, 0);
	ck_assert_uint_eq(v.rule, 4);
	ck_assert_int_eq(v.reply->code, 550);
	ck_assert_str_eq(v.reply->text, "no $verb for you");
	/* 192.0.2.5 is outside rule 4's /25: the command decides. */
	v = decide(p, "EXPN", "192.0.2.5", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	v = decide(p, "VRFY", "2001:db8:1::5", NULL, 0);
	ck_assert_uint_eq(v.rule, 2);
	v = decide(p, "EXPN", "198.51.100.7", NULL, 0);
	ck_assert_uint_eq(v.rule, 5);
	ck_assert_int_eq(v.action, ACTION_TEMPFAIL);
	policy_free(p);
}
END_TEST

START_TEST(user_rules_need_a_user)
{
	struct policy *p = rules_policy();
	struct verdict v = decide(p, "VRFY", "203.0.113.5", "monitor", 0);
	ck_assert_uint_eq(v.rule, 3);
	ck_assert_int_eq(v.action, ACTION_LOG);
	ck_assert_ptr_null(v.reply);
	v = decide(p, "VRFY", "203.0.113.5", "Monitor", 0);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	v = decide(p, "VRFY", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	/* An earlier client rule still comes first. */
	v = decide(p, "VRFY", "127.0.0.1", "monitor", 0);
	ck_assert_uint_eq(v.rule, 1);
	policy_free(p);
}
END_TEST

START_TEST(probe_limit_overrides_refusals_only)
{
	struct policy *p = rules_policy();
	struct verdict v = decide(p, "EXPN", "203.0.113.5", NULL, 1);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	v = decide(p, "EXPN", "203.0.113.5", NULL, 2);
	ck_assert_int_eq(v.source, SOURCE_LIMIT);
	ck_assert_int_eq(v.action, ACTION_DISCONNECT);
	ck_assert_int_eq(v.reply->code, 421);
	ck_assert_str_eq(v.reply->status, "4.7.0");
	ck_assert_str_eq(v.reply->text, "bye");
	/* Allowed commands are never turned into refusals. */
	v = decide(p, "EXPN", "127.0.0.1", NULL, 9);
	ck_assert_int_eq(v.action, ACTION_ALLOW);
	v = decide(p, "XFOO", "203.0.113.5", NULL, 9);
	ck_assert_int_eq(v.action, ACTION_ALLOW);
	policy_free(p);
}
END_TEST

START_TEST(audit_mode_is_not_enforced)
{
	char text[1024];
	snprintf(text, sizeof text, "mode = \"audit\";\n%s", BASE);
	struct policy *p = load_ok(text);
	struct verdict v = decide(p, "EXPN", "203.0.113.5", NULL, 0);
	ck_assert_int_eq(v.action, ACTION_REJECT);
	ck_assert(!v.enforced);
	policy_free(p);
}
END_TEST

START_TEST(many_rules_keep_file_order)
{
	/* 3000 rules; the client is inside rules 1500 (/16) and 2999 (/24). */
	size_t size = 3000 * 80 + 1024;
	char *text = malloc(size);
	size_t n = (size_t)snprintf(text, size, "%srules = (\n", BASE);
	for (int i = 1; i <= 3000; i++) {
		const char *net = i == 1500 ? "10.20.0.0/16" : i == 2999 ? "10.20.30.0/24" : NULL;
		char buf[64];
		if (net == NULL) {
			snprintf(buf, sizeof buf, "172.%d.%d.0/24", 16 + i / 256 % 16, i % 256);
			net = buf;
		}
		n += (size_t)snprintf(text + n, size - n, "%s{ clients = [ \"%s\" ]; action = \"%s\"; }\n",
				      i > 1 ? "," : "", net, i == 1500 ? "log" : "allow");
	}
	snprintf(text + n, size - n, ");\n");
	struct policy *p = load_ok(text);
	free(text);
	struct verdict v = decide(p, "EXPN", "10.20.30.40", NULL, 0);
	ck_assert_uint_eq(v.rule, 1500);
	ck_assert_int_eq(v.action, ACTION_LOG);
	v = decide(p, "EXPN", "10.21.0.1", NULL, 0);
	ck_assert_int_eq(v.source, SOURCE_COMMAND);
	policy_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("policy");
	TCase *load = tcase_create("load");
	tcase_add_test(load, shipped_policy_loads);
	tcase_add_test(load, defaults_without_settings);
	tcase_add_test(load, missing_file);
	tcase_add_test(load, syntax_error_has_line);
	tcase_add_test(load, errors_name_line_and_setting);
	tcase_add_test(load, command_errors);
	tcase_add_test(load, rule_errors);
	tcase_add_test(load, limit_errors);
	tcase_add_test(load, reply_length_counts_doubled_percent);
	suite_add_tcase(s, load);
	TCase *decide_case = tcase_create("decide");
	tcase_add_test(decide_case, verb_not_under_policy_is_default_allow);
	tcase_add_test(decide_case, command_action_for_strangers);
	tcase_add_test(decide_case, first_matching_rule_wins);
	tcase_add_test(decide_case, user_rules_need_a_user);
	tcase_add_test(decide_case, probe_limit_overrides_refusals_only);
	tcase_add_test(decide_case, audit_mode_is_not_enforced);
	tcase_add_test(decide_case, many_rules_keep_file_order);
	suite_add_tcase(s, decide_case);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
