#include "reply.h"

#include <stdio.h>
#include <string.h>

const char *reply_class_name(int code)
{
	switch (code / 100) {
	case 2: return "2xx";
	case 3: return "3xx";
	case 4: return "4xx";
	case 5: return "5xx";
	default: return "none";
	}
}

/* One RFC 3463 subject or detail: "0" or 1-3 digits without a leading zero. */
static const char *status_number(const char *s)
{
	if (*s == '0')
		return s[1] >= '0' && s[1] <= '9' ? NULL : s + 1;
	int n = 0;
	while (*s >= '0' && *s <= '9' && n < 3) {
		s++;
		n++;
	}
	if (n == 0 || (*s >= '0' && *s <= '9'))
		return NULL;
	return s;
}

bool reply_status_valid(const char *status)
{
	if (status[0] != '2' && status[0] != '4' && status[0] != '5')
		return false;
	if (status[1] != '.')
		return false;
	const char *p = status_number(status + 2);
	if (p == NULL || *p != '.')
		return false;
	p = status_number(p + 1);
	return p != NULL && *p == '\0';
}

static const char VERB_VAR[] = "$verb";

const char *reply_text_problem(const char *text)
{
	if (*text == '\0')
		return "is empty";
	for (const char *p = text; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '\r' || c == '\n')
			return "contains CR or LF";
		if (c < 0x20 || c == 0x7f)
			return "contains a control character";
		if (c > 0x7f)
			return "is not ASCII";
		if (c == '$') {
			if (p[1] == '$')
				p++;
			else if (strncmp(p, VERB_VAR, sizeof VERB_VAR - 1) == 0)
				p += sizeof VERB_VAR - 2;
			else
				return "names an unknown variable (only $verb and $$)";
		}
	}
	return NULL;
}

/* Expands the template into buf, doubling '%' when asked. */
static int expand(const char *text, const char *verb, bool double_percent,
		  char *buf, size_t size)
{
	size_t n = 0;
	for (const char *p = text; *p; p++) {
		const char *piece = p;
		size_t len = 1;
		if (*p == '$' && p[1] == '$') {
			p++;
		} else if (*p == '$' && strncmp(p, VERB_VAR, sizeof VERB_VAR - 1) == 0) {
			piece = verb;
			len = strlen(verb);
			p += sizeof VERB_VAR - 2;
		} else if (*p == '%' && double_percent) {
			piece = "%%";
			len = 2;
		}
		if (n + len >= size)
			return -1;
		memcpy(buf + n, piece, len);
		n += len;
	}
	if (n >= size)
		return -1;
	buf[n] = '\0';
	return (int)n;
}

int reply_render(const struct reply_spec *r, const char *verb, char *buf, size_t size)
{
	int head = snprintf(buf, size, "%d %s ", r->code, r->status);
	if (head < 0 || (size_t)head >= size)
		return -1;
	int body = expand(r->text, verb, false, buf + head, size - (size_t)head);
	return body < 0 ? -1 : head + body;
}

int reply_render_milter_text(const struct reply_spec *r, const char *verb,
			     char *buf, size_t size)
{
	return expand(r->text, verb, true, buf, size);
}
