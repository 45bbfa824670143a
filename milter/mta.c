#include "mta.h"

#include <stdbool.h>
#include <string.h>

/* Reads 1 to 4 digits at *p; false when there are none or too many. */
static bool read_number(const char **p, unsigned *out)
{
	unsigned n = 0;
	int digits = 0;
	while (**p >= '0' && **p <= '9') {
		if (++digits > 4)
			return false;
		n = n * 10 + (unsigned)(**p - '0');
		(*p)++;
	}
	*out = n;
	return digits > 0;
}

/* "Postfix 3.10.13" or a snapshot "Postfix 3.11-20250601": major and minor. */
static bool postfix_version(const char *v, unsigned *major, unsigned *minor)
{
	static const char name[] = "Postfix ";
	if (v == NULL || strncmp(v, name, sizeof name - 1) != 0)
		return false;
	const char *p = v + sizeof name - 1;
	if (!read_number(&p, major) || *p++ != '.' || !read_number(&p, minor))
		return false;
	return *p == '\0' || *p == '.' || *p == '-';
}

void mta_identify(struct mta *m, const char *v)
{
	unsigned major, minor;
	bool replaces = postfix_version(v, &major, &minor) &&
			(major > 3 || (major == 3 && minor >= 10));
	m->unknown_5xx_reply = replaces ? MTA_POSTFIX_UNKNOWN_REPLY : NULL;
}

const char *mta_unknown_reply(const struct mta *m, int code)
{
	return code >= 500 && code <= 599 ? m->unknown_5xx_reply : NULL;
}
