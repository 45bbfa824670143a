#include "banner.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MACRO_NAME_MAX 64

/*
 * Reads the macro reference at p (just after '$') into name, in the form
 * libmilter takes ("j" or "{daemon_name}").  Returns the position after
 * it, or NULL when malformed.
 */
static const char *macro_at(const char *p, char *name, size_t size)
{
	if (*p == '{') {
		const char *close = strchr(p, '}');
		size_t len = close ? (size_t)(close - p) + 1 : 0;
		if (close == NULL || len < 3 || len >= size)
			return NULL;
		for (const char *c = p + 1; c < close; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			      (*c >= '0' && *c <= '9') || *c == '_'))
				return NULL;
		memcpy(name, p, len);
		name[len] = '\0';
		return close + 1;
	}
	if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
		name[0] = *p;
		name[1] = '\0';
		return p + 1;
	}
	return NULL;
}

const char *banner_problem(const char *tmpl)
{
	char name[MACRO_NAME_MAX];
	for (const char *p = tmpl; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return "contains a control character";
		if (*p != '$')
			continue;
		if (p[1] == '$') {
			p++;
			continue;
		}
		const char *next = macro_at(p + 1, name, sizeof name);
		if (next == NULL)
			return "bad macro reference (use $j, ${daemon_name} or $$)";
		p = next - 1;
	}
	return NULL;
}

static void append(char *out, size_t size, size_t *n, const char *s, size_t len)
{
	if (*n + 1 >= size)
		return;
	if (len > size - 1 - *n)
		len = size - 1 - *n;
	memcpy(out + *n, s, len);
	*n += len;
	out[*n] = '\0';
}

void banner_expand(const char *tmpl, macro_lookup lookup, void *ctx, char *out, size_t size)
{
	size_t n = 0;
	if (size == 0)
		return;
	out[0] = '\0';
	append(out, size, &n, "220 ", 4);
	char name[MACRO_NAME_MAX];
	for (const char *p = tmpl; *p; p++) {
		const char *next;
		if (*p == '$' && p[1] == '$') {
			append(out, size, &n, "$", 1);
			p++;
		} else if (*p == '$' && (next = macro_at(p + 1, name, sizeof name)) != NULL) {
			const char *value = lookup(ctx, name);
			if (value != NULL)
				append(out, size, &n, value, strlen(value));
			p = next - 1;
		} else {
			append(out, size, &n, p, 1);
		}
	}
}

static bool has_name(const char *names, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = names; (p = strstr(p, name)) != NULL; p += len)
		if ((p == names || p[-1] == ' ') && (p[len] == ' ' || p[len] == '\0'))
			return true;
	return false;
}

int banner_macro_names(const char *tmpl, char *names, size_t size)
{
	char name[MACRO_NAME_MAX];
	for (const char *p = tmpl; *p; p++) {
		const char *next;
		if (*p == '$' && p[1] == '$') {
			p++;
		} else if (*p == '$' && (next = macro_at(p + 1, name, sizeof name)) != NULL) {
			p = next - 1;
			if (has_name(names, name))
				continue;
			size_t used = strlen(names);
			if (used + 1 + strlen(name) + 1 > size)
				return -1;
			snprintf(names + used, size - used, "%s%s", used ? " " : "", name);
		}
	}
	return 0;
}
