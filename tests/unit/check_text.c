/* Unit tests: command-line parsing, reply rendering, audit escaping, banner. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "banner.h"
#include "cmdline.h"
#include "reply.h"

static void assert_parse(const char *line, const char *verb, const char *arg)
{
	struct command_line c;
	cmdline_parse(line, &c);
	ck_assert_uint_eq(c.verb_len, strlen(verb));
	ck_assert(strncmp(c.verb, verb, c.verb_len) == 0);
	ck_assert_uint_eq(c.arg_len, strlen(arg));
	ck_assert(strncmp(c.arg, arg, c.arg_len) == 0);
}

START_TEST(verb_only_and_whole_line)
{
	assert_parse("EXPN", "EXPN", "");
	assert_parse("expn", "expn", "");
	assert_parse("EXPN staff-list", "EXPN", "staff-list");
	assert_parse("  \tXFOO bar baz  ", "XFOO", "bar baz");
	assert_parse("VRFY\troot\r\n", "VRFY", "root");
	assert_parse("TURN \r", "TURN", "");
	assert_parse("", "", "");
	assert_parse("   ", "", "");
	assert_parse("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", "AUTH", "PLAIN dGVzdAB0ZXN0AHRlc3Q=");
	assert_parse("EXPN a\rb", "EXPN", "a\rb");
	struct command_line c;
	cmdline_parse(NULL, &c);
	ck_assert_uint_eq(c.verb_len, 0);
}
END_TEST

START_TEST(reply_classes)
{
	ck_assert_str_eq(reply_class_name(220), "2xx");
	ck_assert_str_eq(reply_class_name(354), "3xx");
	ck_assert_str_eq(reply_class_name(421), "4xx");
	ck_assert_str_eq(reply_class_name(502), "5xx");
	ck_assert_str_eq(reply_class_name(0), "none");
	ck_assert_str_eq(reply_class_name(600), "none");
}
END_TEST

START_TEST(status_codes)
{
	ck_assert(reply_status_valid("5.5.1"));
	ck_assert(reply_status_valid("4.7.0"));
	ck_assert(reply_status_valid("2.0.0"));
	ck_assert(reply_status_valid("5.999.999"));
	ck_assert(!reply_status_valid("3.5.1"));
	ck_assert(!reply_status_valid("5.5"));
	ck_assert(!reply_status_valid("5.05.1"));
	ck_assert(!reply_status_valid("5.5.1000"));
	ck_assert(!reply_status_valid("5.5.1 "));
	ck_assert(!reply_status_valid(""));
	ck_assert(!reply_status_valid("5..1"));
}
END_TEST

START_TEST(reply_render_and_percent)
{
	struct reply_spec r = { 502, "5.5.1", "$verb command not implemented" };
	char buf[128];
	ck_assert_int_eq(reply_render(&r, "EXPN", buf, sizeof buf), 38);
	ck_assert_str_eq(buf, "502 5.5.1 EXPN command not implemented");
	r.text = "100% sure: $verb costs $$5 %s";
	reply_render(&r, "TURN", buf, sizeof buf);
	ck_assert_str_eq(buf, "502 5.5.1 100% sure: TURN costs $5 %s");
	reply_render_milter_text(&r, "TURN", buf, sizeof buf);
	ck_assert_str_eq(buf, "100%% sure: TURN costs $5 %%s");
	ck_assert_int_eq(reply_render(&r, "TURN", buf, 10), -1);
	ck_assert_int_eq(reply_render_milter_text(&r, "TURN", buf, 29), -1);
	ck_assert_int_eq(reply_render_milter_text(&r, "TURN", buf, 30), 29);
}
END_TEST

START_TEST(reply_text_checks)
{
	ck_assert_ptr_null(reply_text_problem("$verb is off, $$ and % are fine"));
	ck_assert_str_eq(reply_text_problem("a\nb"), "contains CR or LF");
	ck_assert_str_eq(reply_text_problem("a\x1b[31m"), "contains a control character");
	ck_assert_str_eq(reply_text_problem("\xe2\x80\xae"), "is not ASCII");
	ck_assert_ptr_null(reply_text_problem("$verbs"));
	ck_assert_str_eq(reply_text_problem("$x"), "names an unknown variable (only $verb and $$)");
	ck_assert_str_eq(reply_text_problem(""), "is empty");
}
END_TEST

static const char *escaped(const char *value, size_t len)
{
	static char out[4 * AUDIT_VALUE_MAX + 16];
	audit_escape(out, sizeof out, value, len);
	return out;
}

START_TEST(escaping_plain_and_quoted)
{
	ck_assert_str_eq(escaped("EXPN", 4), "EXPN");
	ck_assert_str_eq(escaped("", 0), "\"\"");
	ck_assert_str_eq(escaped("a b", 3), "\"a b\"");
	ck_assert_str_eq(escaped("k=v", 3), "\"k=v\"");
	ck_assert_str_eq(escaped("say \"hi\"", 8), "\"say \\\"hi\\\"\"");
	ck_assert_str_eq(escaped("back\\slash", 10), "\"back\\\\slash\"");
	ck_assert_str_eq(escaped("a\r\nb", 4), "\"a\\r\\nb\"");
	ck_assert_str_eq(escaped("\x1b[31mred", 8), "\"\\x1b[31mred\"");
	ck_assert_str_eq(escaped("a\0b", 3), "\"a\\x00b\"");
	ck_assert_str_eq(escaped("%n%s%x", 6), "%n%s%x");
	ck_assert_str_eq(escaped("\xff\xfe", 2), "\"\\xff\\xfe\"");
	ck_assert_str_eq(escaped("\xe2\x80\xae" "abc", 6), "\"\\xe2\\x80\\xaeabc\"");
	ck_assert_str_eq(escaped("tab\there", 8), "\"tab\\there\"");
	ck_assert_str_eq(escaped("\x7f", 1), "\"\\x7f\"");
}
END_TEST

START_TEST(escaping_cuts_long_values)
{
	char *big = malloc(5000);
	memset(big, 'A', 5000);
	const char *out = escaped(big, 5000);
	ck_assert_uint_eq(strlen(out), AUDIT_VALUE_MAX + 5);
	ck_assert_int_eq(out[0], '"');
	ck_assert(strcmp(out + AUDIT_VALUE_MAX + 1, "...\"") == 0);
	/* All bytes hostile: the worst case still fits and is cut. */
	memset(big, '\x01', 5000);
	out = escaped(big, 5000);
	ck_assert_uint_eq(strlen(out), 4 * AUDIT_VALUE_MAX + 5);
	char small[8];
	audit_escape(small, sizeof small, "abcdefghijkl", 12);
	ck_assert_str_eq(small, "abcdefg");
	free(big);
}
END_TEST

START_TEST(audit_line_layout)
{
	struct audit_line l;
	audit_start(&l, NULL);
	audit_put(&l, "event", "command");
	audit_putn(&l, "arg", "x y\n", 4);
	audit_putu(&l, "refused", 3);
	ck_assert_str_eq(l.text, "NOQUEUE: event=command arg=\"x y\\n\" refused=3");
	audit_start(&l, "4FzQ1X2abc");
	audit_put(&l, "event", "close");
	ck_assert_str_eq(l.text, "4FzQ1X2abc: event=close");
	audit_start(&l, "bad id\n");
	ck_assert_str_eq(l.text, "\"bad id\\n\":");
	/* Found by fuzz_policydoor: a ':' in a queue id ended the prefix early. */
	audit_start(&l, "a:b");
	ck_assert_str_eq(l.text, "\"a\\x3ab\":");
	audit_start(&l, "x y:z");
	ck_assert_str_eq(l.text, "\"x y\\x3az\":");
	/* A long hostile id is cut like any value, its quotes kept. */
	char long_id[300];
	memset(long_id, '\x01', sizeof long_id - 1);
	long_id[sizeof long_id - 1] = '\0';
	audit_start(&l, long_id);
	ck_assert_uint_eq(l.len, 4 * AUDIT_VALUE_MAX + 6);
	ck_assert(strcmp(l.text + l.len - 5, "...\":") == 0);
	/* Never overflows: values that do not fit are dropped whole. */
	char *big = malloc(5000);
	memset(big, '\x02', 5000);
	audit_start(&l, NULL);
	for (int i = 0; i < 10; i++)
		audit_putn(&l, "arg", big, 5000);
	ck_assert_uint_lt(l.len, AUDIT_LINE_MAX);
	ck_assert_uint_eq(strlen(l.text), l.len);
	free(big);
}
END_TEST

static const char *fake_macro(void *ctx, const char *name)
{
	(void)ctx;
	if (strcmp(name, "j") == 0)
		return "mx.example.com";
	if (strcmp(name, "v") == 0)
		return "Postfix 3.7.11";
	if (strcmp(name, "{daemon_name}") == 0)
		return "smtpd";
	return NULL;
}

START_TEST(banner_from_macros)
{
	char out[128];
	banner_expand("$j ESMTP $v", fake_macro, NULL, out, sizeof out);
	ck_assert_str_eq(out, "220 mx.example.com ESMTP Postfix 3.7.11");
	banner_expand("$j ESMTP Postfix (Debian/GNU) ${daemon_name} $$ $_", fake_macro, NULL, out, sizeof out);
	ck_assert_str_eq(out, "220 mx.example.com ESMTP Postfix (Debian/GNU) smtpd $ ");
	banner_expand("$j ESMTP $v", fake_macro, NULL, out, 12);
	ck_assert_str_eq(out, "220 mx.exam");
}
END_TEST

START_TEST(banner_checks_and_macro_names)
{
	ck_assert_ptr_null(banner_problem("$j ESMTP $v ${daemon_name} $$"));
	ck_assert_ptr_nonnull(banner_problem("${daemon_name"));
	ck_assert_ptr_nonnull(banner_problem("$"));
	ck_assert_ptr_nonnull(banner_problem("${}"));
	ck_assert_ptr_nonnull(banner_problem("$ x"));
	ck_assert_ptr_nonnull(banner_problem("a\tb"));
	char names[64] = "j v {client_addr}";
	ck_assert_int_eq(banner_macro_names("$j ESMTP $v ${daemon_name} $$ $_ ${daemon_name}", names, sizeof names), 0);
	ck_assert_str_eq(names, "j v {client_addr} {daemon_name} _");
	char tiny[4] = "";
	ck_assert_int_eq(banner_macro_names("${daemon_name}", tiny, sizeof tiny), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("text");
	TCase *t = tcase_create("text");
	tcase_add_test(t, verb_only_and_whole_line);
	tcase_add_test(t, reply_classes);
	tcase_add_test(t, status_codes);
	tcase_add_test(t, reply_render_and_percent);
	tcase_add_test(t, reply_text_checks);
	tcase_add_test(t, escaping_plain_and_quoted);
	tcase_add_test(t, escaping_cuts_long_values);
	tcase_add_test(t, audit_line_layout);
	tcase_add_test(t, banner_from_macros);
	tcase_add_test(t, banner_checks_and_macro_names);
	suite_add_tcase(s, t);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
