/*
 * Fuzz target: the reply builder and the banner template.  Input: two
 * size bytes, then newline-separated fields: status, reply text, verb
 * (its letters and digits), banner template, and values for the macros j,
 * v and {daemon_name}.
 * Each function is checked against a plain restatement of its rule.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "banner.h"
#include "reply.h"

#define FIELDS 7

/* RFC 3463 "C.S.D" said once more, differently: class 2/4/5, 0 or 1-999. */
static bool status_ok(const char *s)
{
	if (*s != '2' && *s != '4' && *s != '5')
		return false;
	s++;
	for (int part = 0; part < 2; part++) {
		if (*s++ != '.')
			return false;
		size_t n = strspn(s, "0123456789");
		if (n == 0 || n > 3 || (n > 1 && *s == '0'))
			return false;
		s += n;
	}
	return *s == '\0';
}

static const char *macros[3];

static const char *lookup(void *ctx, const char *name)
{
	(void)ctx;
	if (strcmp(name, "j") == 0)
		return macros[0];
	if (strcmp(name, "v") == 0)
		return macros[1];
	if (strcmp(name, "{daemon_name}") == 0)
		return macros[2];
	return NULL;
}

static const char *nothing(void *ctx, const char *name)
{
	(void)ctx;
	(void)name;
	return NULL;
}

static void check_reply(const char *status, const char *text, const char *verb, size_t size)
{
	if (reply_status_valid(status) != status_ok(status))
		abort();
	const char *why = reply_text_problem(text);
	if (why == NULL)
		for (const char *p = text; *p; p++)
			if (*p < 0x20 || *p > 0x7e)
				abort();

	struct reply_spec r = { 502, "5.5.1", (char *)text };
	if (strlen(status) < sizeof r.status)
		strcpy(r.status, status);
	char *plain = malloc(size), *milter = malloc(2 * size);
	int n = reply_render(&r, verb, plain, size);
	int m = reply_render_milter_text(&r, verb, milter, 2 * size);
	if (n >= 0 && ((size_t)n >= size || strlen(plain) != (size_t)n))
		abort();
	if (m >= 0 && ((size_t)m >= 2 * size || strlen(milter) != (size_t)m))
		abort();
	/* The milter text is the client's text with every % doubled. */
	if (n >= 0 && m >= 0) {
		size_t head = strlen("502 ") + strlen(r.status) + 1;
		const char *p = plain + head, *q = milter;
		while (*p) {
			if (*q != *p || (*p == '%' && *++q != '%'))
				abort();
			p++;
			q++;
		}
		if (*q != '\0')
			abort();
	}
	free(plain);
	free(milter);
}

static void check_banner(const char *tmpl, size_t size)
{
	const char *why = banner_problem(tmpl);
	char *out = malloc(size);
	banner_expand(tmpl, lookup, NULL, out, size);
	if (strlen(out) >= size || strncmp(out, "220 ", size - 1 < 4 ? size - 1 : 4) != 0)
		abort();
	free(out);

	/* Without macro values a well-formed template is its text, $$ as $. */
	if (why == NULL) {
		size_t len = strlen(tmpl);
		char *want = malloc(len + 5), *got = malloc(len + 5);
		size_t w = 0;
		memcpy(want, "220 ", 4);
		w = 4;
		for (const char *p = tmpl; *p; p++) {
			if (*p != '$') {
				want[w++] = *p;
			} else if (p[1] == '$') {
				want[w++] = '$';
				p++;
			} else if (p[1] == '{') {
				p = strchr(p, '}');
			} else {
				p++;
			}
		}
		want[w] = '\0';
		banner_expand(tmpl, nothing, NULL, got, len + 5);
		if (strcmp(want, got) != 0)
			abort();
		free(want);
		free(got);
	}

	char names[96] = "j";
	int rc = banner_macro_names(tmpl, names, sizeof names);
	if (strlen(names) >= sizeof names || (rc != 0 && rc != -1))
		abort();
	/* Each name once. */
	for (char *a = names; *a; ) {
		size_t alen = strcspn(a, " ");
		for (char *b = a + alen; *b; ) {
			b += strspn(b, " ");
			size_t blen = strcspn(b, " ");
			if (blen == alen && memcmp(a, b, alen) == 0)
				abort();
			b += blen;
		}
		a += alen;
		a += strspn(a, " ");
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t reply_size = 1 + data[0] * 4; /* 1 .. 1021 */
	size_t banner_size = 1 + data[1];
	char *copy = malloc(size - 1);
	memcpy(copy, data + 2, size - 2);
	copy[size - 2] = '\0';

	const char *field[FIELDS];
	char *p = copy;
	for (int i = 0; i < FIELDS; i++) {
		field[i] = p;
		char *nl = strchr(p, '\n');
		if (nl != NULL) {
			*nl = '\0';
			p = nl + 1;
		} else {
			p += strlen(p);
		}
	}
	macros[0] = field[4][0] ? field[4] : NULL;
	macros[1] = field[5];
	macros[2] = field[6][0] ? field[6] : NULL;
	/* $verb is a verb under policy: letters and digits, at most 16 (config.c). */
	char verb[17];
	size_t vlen = 0;
	for (const char *v = field[2]; *v && vlen < sizeof verb - 1; v++)
		if ((*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') || (*v >= '0' && *v <= '9'))
			verb[vlen++] = *v;
	verb[vlen] = '\0';
	check_reply(field[0], field[1], verb, reply_size);
	check_banner(field[3], banner_size);
	check_banner(field[1], banner_size);
	free(copy);
	return 0;
}
