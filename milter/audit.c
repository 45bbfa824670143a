#include "audit.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

static bool needs_quotes(unsigned char c)
{
	return c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\';
}

size_t audit_escape(char *out, size_t size, const char *value, size_t len)
{
	/* Worst case per byte is "\xHH": size it so a full value always fits. */
	char buf[4 * AUDIT_VALUE_MAX + 8];
	bool cut = len > AUDIT_VALUE_MAX;
	if (cut)
		len = AUDIT_VALUE_MAX;
	bool quote = cut || len == 0;
	for (size_t i = 0; i < len && !quote; i++)
		quote = needs_quotes((unsigned char)value[i]);

	size_t n = 0;
	if (quote)
		buf[n++] = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		switch (c) {
		case '"': n += (size_t)sprintf(buf + n, "\\\""); break;
		case '\\': n += (size_t)sprintf(buf + n, "\\\\"); break;
		case '\n': n += (size_t)sprintf(buf + n, "\\n"); break;
		case '\r': n += (size_t)sprintf(buf + n, "\\r"); break;
		case '\t': n += (size_t)sprintf(buf + n, "\\t"); break;
		default:
			if (c < ' ' || c >= 0x7f)
				n += (size_t)sprintf(buf + n, "\\x%02x", c);
			else
				buf[n++] = (char)c;
		}
	}
	if (cut) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	if (quote)
		buf[n++] = '"';
	buf[n] = '\0';
	if (size == 0)
		return 0;
	if (n >= size)
		n = size - 1;
	memcpy(out, buf, n);
	out[n] = '\0';
	return n;
}

void audit_start(struct audit_line *l, const char *queue_id)
{
	l->len = 0;
	l->text[0] = '\0';
	if (queue_id == NULL || *queue_id == '\0')
		queue_id = "NOQUEUE";
	char raw[4 * AUDIT_VALUE_MAX + 8], id[sizeof raw + 3 * AUDIT_VALUE_MAX + 2];
	size_t n = audit_escape(raw, sizeof raw, queue_id, strlen(queue_id));
	/*
	 * The first ':' must end the prefix: an MTA's queue id has none, so one
	 * that does is shown quoted with each ':' as \x3a.
	 */
	size_t o = 0;
	bool quote = memchr(raw, ':', n) != NULL && raw[0] != '"';
	if (quote)
		id[o++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (raw[i] == ':') {
			memcpy(id + o, "\\x3a", 4);
			o += 4;
		} else {
			id[o++] = raw[i];
		}
	}
	if (quote)
		id[o++] = '"';
	id[o] = '\0';
	l->len = (size_t)snprintf(l->text, sizeof l->text, "%s:", id);
}

void audit_putn(struct audit_line *l, const char *key, const char *value, size_t len)
{
	char escaped[4 * AUDIT_VALUE_MAX + 8];
	size_t n = audit_escape(escaped, sizeof escaped, value, len);
	size_t need = 1 + strlen(key) + 1 + n;
	if (l->len + need >= sizeof l->text)
		return;
	l->len += (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, " %s=%s", key, escaped);
}

void audit_put(struct audit_line *l, const char *key, const char *value)
{
	audit_putn(l, key, value, strlen(value));
}

void audit_putu(struct audit_line *l, const char *key, unsigned long n)
{
	char digits[24];
	snprintf(digits, sizeof digits, "%lu", n);
	audit_put(l, key, digits);
}

void audit_emit(const struct audit_line *l)
{
	log_msg(LOG_INFO, "%s", l->text);
}
