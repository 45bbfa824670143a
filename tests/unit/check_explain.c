/* Unit tests: the reply-code table of `milter-cmdgate explain`, its lookups and output. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "explain.h"
#include "policy.h"

/* Every reply code of RFC 5321, plus 521 and 556 of RFC 7504. */
static const char *const RFC_CODES[] = {
	"211", "214", "220", "221", "250", "251", "252", "354",
	"421", "450", "451", "452", "455",
	"500", "501", "502", "503", "504", "550", "551", "552", "553", "554", "555",
	"521", "556", NULL,
};

/* Output of a print function or explain_main, captured in memory. */
struct capture {
	char *text;
	size_t len;
	FILE *f;
};

static FILE *capture_open(struct capture *c)
{
	c->text = NULL;
	c->len = 0;
	c->f = open_memstream(&c->text, &c->len);
	ck_assert_ptr_nonnull(c->f);
	return c->f;
}

static char *capture_close(struct capture *c)
{
	ck_assert_int_eq(fclose(c->f), 0);
	return c->text;
}

static const struct explanation *must_find(const char *code)
{
	const struct explanation *e = NULL;
	ck_assert_msg(explain_lookup(code, &e) == EXPLAIN_FOUND, "%s not in the table", code);
	ck_assert_str_eq(e->code, code);
	return e;
}

START_TEST(every_rfc_code_is_there)
{
	for (const char *const *c = RFC_CODES; *c; c++)
		must_find(*c);
}
END_TEST

START_TEST(the_products_own_status_codes_are_there)
{
	must_find("5.5.1");
	must_find("4.7.1");
	must_find("4.7.0");
	/* whatever policy.c sends by default, code and status */
	struct policy *p = policy_new();
	ck_assert_ptr_nonnull(p);
	const struct reply_spec *defaults[] = { &p->reject_reply, &p->tempfail_reply,
		&p->disconnect_reply, &p->limit_default };
	for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
		char code[8];
		snprintf(code, sizeof code, "%d", defaults[i]->code);
		must_find(code);
		must_find(defaults[i]->status);
	}
	policy_free(p);
}
END_TEST

START_TEST(entries_complete_and_unique)
{
	size_t n = 0;
	for (const struct explanation *e = explain_table; e->code; e++, n++) {
		ck_assert_msg(e->name && *e->name && e->meaning && *e->meaning && e->when &&
			      *e->when && e->todo && *e->todo, "%s: empty field", e->code);
		ck_assert_ptr_nonnull(explain_class(e->code));
		for (const struct explanation *f = e + 1; f->code; f++)
			ck_assert_msg(strcmp(e->code, f->code) != 0, "%s listed twice", e->code);
	}
	ck_assert_uint_eq(n, 26 + 5); /* the RFC codes, 5.5.1 4.7.1 4.7.0 5.5.2 5.7.1 */
}
END_TEST

START_TEST(classes)
{
	ck_assert_str_eq(explain_class("220"), "2xx positive completion");
	ck_assert_str_eq(explain_class("354"), "3xx positive intermediate");
	ck_assert_str_eq(explain_class("421"), "4xx transient negative");
	ck_assert_str_eq(explain_class("550"), "5xx permanent negative");
	ck_assert_str_eq(explain_class("4.7.1"), "4xx transient negative");
	ck_assert_str_eq(explain_class("5.5.1"), "5xx permanent negative");
	ck_assert_ptr_null(explain_class("150"));
	ck_assert_ptr_null(explain_class("3.5.1"));
}
END_TEST

START_TEST(malformed_and_unknown)
{
	static const char *const malformed[] = { "", "5", "55", "5500", "600", "150", "099",
		"55O", " 550", "550 ", "5.5", "3.5.1", "5.05.1", "5.5.1000", "5.5.1.", "abc",
		"+550", NULL };
	const struct explanation *e = NULL;
	for (const char *const *m = malformed; *m; m++)
		ck_assert_msg(explain_lookup(*m, &e) == EXPLAIN_MALFORMED, "\"%s\"", *m);
	static const char *const unknown[] = { "200", "299", "599", "430", "4.4.2", "5.1.1",
		"2.0.0", NULL };
	for (const char *const *u = unknown; *u; u++)
		ck_assert_msg(explain_lookup(*u, &e) == EXPLAIN_UNKNOWN, "\"%s\"", *u);
	ck_assert_ptr_null(e);
}
END_TEST

START_TEST(one_code)
{
	struct capture c;
	explain_print_one(capture_open(&c), must_find("221"));
	ck_assert_str_eq(capture_close(&c),
		"221 Service closing transmission channel\n"
		"  class:      2xx positive completion\n"
		"  meaning:    The server ends the session in good order.\n"
		"  when seen:  In answer to QUIT.\n"
		"  what to do: Nothing; the client closes the connection.\n");
	free(c.text);

	explain_print_one(capture_open(&c), must_find("502"));
	ck_assert_str_eq(capture_close(&c),
		"502 Command not implemented\n"
		"  class:      5xx permanent negative\n"
		"  meaning:    The server knows the command but does not offer it, or has\n"
		"              switched it off.\n"
		"  when seen:  After a command the site turned off: VRFY with Postfix's\n"
		"              disable_vrfy_command, TURN on Sendmail, and milter-cmdgate's\n"
		"              action reject (default reply 502 5.5.1).\n"
		"  what to do: Client: do without the command; asking again will not help.\n"
		"              Server: the milter-cmdgate audit line says which rule refused\n"
		"              it; a rule with action allow lets a trusted client through.\n");
	free(c.text);
}
END_TEST

START_TEST(two_codes_side_by_side)
{
	struct capture c;
	explain_print_pair(capture_open(&c), must_find("221"), must_find("354"));
	ck_assert_str_eq(capture_close(&c),
		"code        221                               354\n"
		"name        Service closing transmission      Start mail input\n"
		"            channel\n"
		"class       2xx positive completion           3xx positive intermediate\n"
		"meaning     The server ends the session in    The server waits for the\n"
		"            good order.                       message: header and body, ended\n"
		"                                              by a line holding a single dot.\n"
		"when seen   In answer to QUIT.                After DATA, once at least one\n"
		"                                              recipient was accepted.\n"
		"what to do  Nothing; the client closes the    Nothing; the client sends the\n"
		"            connection.                       message now.\n");
	free(c.text);
}
END_TEST

/* No line of any output is wider than 78 columns, and no line ends in a space. */
static void assert_tidy(const char *text, const char *what)
{
	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n');
		ck_assert_ptr_nonnull(end);
		ck_assert_msg(end - line <= 78, "%s: line longer than 78: %.*s", what,
			      (int)(end - line), line);
		ck_assert_msg(end == line || end[-1] != ' ', "%s: trailing space: %.*s", what,
			      (int)(end - line), line);
		line = end + 1;
	}
}

static size_t visible(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s != ' ' && *s != '\n';
	return n;
}

/* Visible characters of an entry's fields: wrapping must lose none. */
static size_t entry_visible(const struct explanation *e)
{
	return visible(e->code) + visible(e->name) + visible(explain_class(e->code)) +
	       visible(e->meaning) + visible(e->when) + visible(e->todo);
}

START_TEST(every_entry_fits)
{
	const size_t one_labels = visible("class: meaning: when seen: what to do:");
	const size_t pair_labels = visible("code name class meaning when seen what to do");
	for (const struct explanation *a = explain_table; a->code; a++) {
		struct capture c;
		explain_print_one(capture_open(&c), a);
		char *text = capture_close(&c);
		assert_tidy(text, a->code);
		ck_assert_uint_eq(visible(text), one_labels + entry_visible(a));
		free(text);
		for (const struct explanation *b = explain_table; b->code; b++) {
			explain_print_pair(capture_open(&c), a, b);
			text = capture_close(&c);
			assert_tidy(text, a->code);
			ck_assert_uint_eq(visible(text), pair_labels + entry_visible(a) + entry_visible(b));
			free(text);
		}
	}
}
END_TEST

/* Runs explain_main on ARGS; returns the status, stdout and stderr text. */
static int run(char *const *args, int n, char **out, char **err)
{
	struct capture o, e;
	int rc = explain_main(n, args, capture_open(&o), capture_open(&e));
	*out = capture_close(&o);
	*err = capture_close(&e);
	return rc;
}

START_TEST(main_one_two_many)
{
	char *out, *err;
	char *one[] = { "5.5.1" };
	ck_assert_int_eq(run(one, 1, &out, &err), 0);
	ck_assert(strncmp(out, "5.5.1 Invalid command\n  class:      5xx permanent negative\n", 59) == 0);
	ck_assert_str_eq(err, "");
	free(out);
	free(err);

	char *two[] = { "221", "354" };
	ck_assert_int_eq(run(two, 2, &out, &err), 0);
	ck_assert(strncmp(out, "code        221                               354\n", 50) == 0);
	ck_assert_str_eq(err, "");
	free(out);
	free(err);

	char *three[] = { "221", "221", "220" };
	ck_assert_int_eq(run(three, 3, &out, &err), 0);
	const char *second = strstr(out, "\n\n221 Service closing");
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_nonnull(strstr(second, "\n\n220 Service ready\n"));
	free(out);
	free(err);
}
END_TEST

START_TEST(main_errors)
{
	char *out, *err;
	ck_assert_int_eq(run(NULL, 0, &out, &err), EX_USAGE);
	ck_assert_str_eq(out, "");
	ck_assert_str_eq(err, "usage: milter-cmdgate explain CODE...\n"
		"  CODE: an SMTP reply code (550) or an enhanced status code (5.5.1)\n");
	free(out);
	free(err);

	/* one bad code among good ones: every problem said, nothing printed */
	char *args[] = { "550", "55x", "599", "4.4.2" };
	ck_assert_int_eq(run(args, 4, &out, &err), EX_USAGE);
	ck_assert_str_eq(out, "");
	ck_assert_str_eq(err,
		"milter-cmdgate explain: \"55x\" is neither an SMTP reply code (three digits from "
		"200 to 599, like 550) nor an enhanced status code (like 5.5.1)\n"
		"milter-cmdgate explain: 599: not a reply code of RFC 5321 or RFC 7504 (its class "
		"would be 5xx permanent negative)\n"
		"milter-cmdgate explain: 4.4.2: not an enhanced status code milter-cmdgate knows "
		"(its class: 4xx transient negative; RFC 3463 lists them all)\n");
	free(out);
	free(err);

	char *many[17];
	for (int i = 0; i < 17; i++)
		many[i] = "250";
	ck_assert_int_eq(run(many, 17, &out, &err), EX_USAGE);
	ck_assert_str_eq(out, "");
	ck_assert_str_eq(err, "milter-cmdgate explain: at most 16 codes at a time\n");
	free(out);
	free(err);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("explain");
	TCase *t = tcase_create("explain");
	tcase_add_test(t, every_rfc_code_is_there);
	tcase_add_test(t, the_products_own_status_codes_are_there);
	tcase_add_test(t, entries_complete_and_unique);
	tcase_add_test(t, classes);
	tcase_add_test(t, malformed_and_unknown);
	tcase_add_test(t, one_code);
	tcase_add_test(t, two_codes_side_by_side);
	tcase_add_test(t, every_entry_fits);
	tcase_add_test(t, main_one_two_many);
	tcase_add_test(t, main_errors);
	suite_add_tcase(s, t);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
