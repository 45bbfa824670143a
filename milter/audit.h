/*
 * audit: builds the key=value lines of the audit trail.  Every value passes
 * one escaper: values with spaces, quotes, '=', backslashes, control bytes
 * or bytes above 0x7e are double-quoted with C escapes (\" \\ \n \r \t
 * \xHH), and client text is cut at AUDIT_VALUE_MAX bytes (marked "...").
 * A line never overflows: what does not fit is dropped whole, key and value.
 */
#ifndef CMDGATE_AUDIT_H
#define CMDGATE_AUDIT_H

#include <stddef.h>

#define AUDIT_LINE_MAX 4096
#define AUDIT_VALUE_MAX 256 /* bytes of one value kept before the cut */

struct audit_line {
	char text[AUDIT_LINE_MAX];
	size_t len;
};

/* Escapes value[0..len) into out (always NUL-terminated); returns its length. */
size_t audit_escape(char *out, size_t size, const char *value, size_t len);

/* Starts a line with "QUEUEID: ", or "NOQUEUE: " when queue_id is NULL. */
void audit_start(struct audit_line *l, const char *queue_id);
void audit_put(struct audit_line *l, const char *key, const char *value);
void audit_putn(struct audit_line *l, const char *key, const char *value, size_t len);
void audit_putu(struct audit_line *l, const char *key, unsigned long n);

/* Writes the line to the log (never as a format string). */
void audit_emit(const struct audit_line *l);

#endif
