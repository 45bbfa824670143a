/*
 * Unit tests: milter-cmdgate.conf(5) documents exactly the settings the
 * loader knows, and its EXAMPLE is the shipped policy, line for line.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define PAGE MAN_DIR "/milter-cmdgate.conf.5.in"
#define POLICY CONF_DIR "/milter-cmdgate.conf"
#define MAX_LINES 2000

struct text {
	char *lines[MAX_LINES];
	size_t n;
};

static void read_lines(const char *path, struct text *t)
{
	FILE *f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot read %s", path);
	t->n = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, f)) >= 0) {
		ck_assert_uint_lt(t->n, MAX_LINES);
		if (len > 0 && line[len - 1] == '\n')
			line[len - 1] = '\0';
		t->lines[t->n++] = strdup(line);
	}
	free(line);
	fclose(f);
}

static void free_lines(struct text *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->lines[i]);
}

/*
 * The text a roff line shows, for the forms this page uses: a leading
 * font macro (".B ") dropped, font escapes (\fB \fI \fP \fR) removed,
 * \- as -, \e as a backslash, \& as nothing.
 */
static void plain(const char *roff, char *out, size_t size)
{
	if (strncmp(roff, ".B ", 3) == 0)
		roff += 3;
	size_t n = 0;
	for (const char *p = roff; *p && n + 1 < size; p++) {
		if (p[0] == '\\' && p[1] == 'f' && p[2] != '\0') {
			p += 2;
		} else if (p[0] == '\\' && p[1] == '-') {
			out[n++] = '-';
			p++;
		} else if (p[0] == '\\' && p[1] == 'e') {
			out[n++] = '\\';
			p++;
		} else if (p[0] == '\\' && p[1] == '&') {
			p++;
		} else {
			out[n++] = *p;
		}
	}
	out[n] = '\0';
}

/* Index of the line ".SH NAME", or t->n. */
static size_t section(const struct text *t, const char *name)
{
	char want[64];
	snprintf(want, sizeof want, ".SH %s", name);
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->lines[i], want) == 0)
			return i;
	return t->n;
}

static size_t section_end(const struct text *t, size_t start)
{
	size_t i = start + 1;
	while (i < t->n && strncmp(t->lines[i], ".SH ", 4) != 0)
		i++;
	return i;
}

static bool known(const char *name)
{
	for (const char *const *k = config_known_settings; *k; k++)
		if (strcmp(*k, name) == 0)
			return true;
	return false;
}

START_TEST(settings_section_names_every_setting)
{
	struct text page;
	read_lines(PAGE, &page);
	size_t start = section(&page, "SETTINGS");
	ck_assert_msg(start < page.n, "%s has no SETTINGS section", PAGE);
	size_t end = section_end(&page, start);

	/* every .TP tag under SETTINGS is a setting the loader knows */
	char tags[100][80];
	size_t ntags = 0;
	for (size_t i = start; i + 1 < end; i++) {
		if (strcmp(page.lines[i], ".TP") != 0)
			continue;
		ck_assert_uint_lt(ntags, 100);
		plain(page.lines[i + 1], tags[ntags], sizeof tags[ntags]);
		ck_assert_msg(known(tags[ntags]), "%s documents \"%s\", which the loader does not know",
			      PAGE, tags[ntags]);
		ntags++;
	}
	/* and every setting the loader knows has its tag, once */
	for (const char *const *k = config_known_settings; *k; k++) {
		size_t seen = 0;
		for (size_t i = 0; i < ntags; i++)
			seen += strcmp(tags[i], *k) == 0;
		ck_assert_msg(seen == 1, "setting \"%s\" is documented %zu times in SETTINGS of %s",
			      *k, seen, PAGE);
	}
	/* each entry gives a type, a default (unless required) and an example */
	for (size_t i = start; i + 1 < end; i++) {
		if (strcmp(page.lines[i], ".TP") != 0)
			continue;
		bool example = false, dflt = false, required = false;
		const char *type = page.lines[i + 2];
		for (size_t j = i + 2; j < end && strcmp(page.lines[j], ".TP") != 0; j++) {
			example |= strcmp(page.lines[j], "Example:") == 0;
			dflt |= strncmp(page.lines[j], "Default:", 8) == 0;
			required |= strstr(page.lines[j], "required") != NULL;
		}
		ck_assert_msg(strncmp(type, "String", 6) == 0 || strncmp(type, "Integer", 7) == 0 ||
			      strncmp(type, "Group", 5) == 0 || strncmp(type, "List", 4) == 0 ||
			      strncmp(type, "Array", 5) == 0,
			      "%s: entry does not start with its type: %s", page.lines[i + 1], type);
		ck_assert_msg(example, "%s: no example", page.lines[i + 1]);
		ck_assert_msg(dflt || required, "%s: no default", page.lines[i + 1]);
	}
	free_lines(&page);
}
END_TEST

START_TEST(example_is_the_shipped_policy)
{
	struct text page, policy;
	read_lines(PAGE, &page);
	read_lines(POLICY, &policy);
	size_t start = section(&page, "EXAMPLE");
	ck_assert_msg(start < page.n, "%s has no EXAMPLE section", PAGE);
	size_t end = section_end(&page, start);
	size_t i = start;
	while (i < end && strcmp(page.lines[i], ".EX") != 0)
		i++;
	ck_assert_msg(i < end, "no .EX in EXAMPLE");
	size_t k = 0;
	for (i++; i < end && strcmp(page.lines[i], ".EE") != 0; i++, k++) {
		char shown[512];
		plain(page.lines[i], shown, sizeof shown);
		ck_assert_msg(k < policy.n, "EXAMPLE is longer than %s", POLICY);
		ck_assert_msg(strcmp(shown, policy.lines[k]) == 0,
			      "EXAMPLE line %zu differs from %s:\n  page:   %s\n  policy: %s",
			      k + 1, POLICY, shown, policy.lines[k]);
	}
	ck_assert_msg(k == policy.n, "EXAMPLE has %zu lines, %s has %zu", k, POLICY, policy.n);
	free_lines(&page);
	free_lines(&policy);
}
END_TEST

/* The example in the page loads, so what the page shows is a working policy. */
START_TEST(shipped_policy_loads)
{
	struct config_error err;
	struct policy *p = config_load(POLICY, &err);
	char text[1024] = "";
	if (p == NULL)
		config_error_format(&err, text, sizeof text);
	ck_assert_msg(p != NULL, "%s", text);
	policy_free(p);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("manpage");
	TCase *t = tcase_create("milter-cmdgate.conf.5");
	tcase_add_test(t, settings_section_names_every_setting);
	tcase_add_test(t, example_is_the_shipped_policy);
	tcase_add_test(t, shipped_policy_loads);
	suite_add_tcase(s, t);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
