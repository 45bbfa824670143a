/*
 * reply: SMTP reply codes, their classes, and the reply lines the policy
 * sends.  Pure code.  A reply template's text may name $verb (the command
 * under policy, as the policy spells it) and $$ (a dollar sign); nothing the
 * client typed ever reaches a reply.
 */
#ifndef CMDGATE_REPLY_H
#define CMDGATE_REPLY_H

#include <stdbool.h>
#include <stddef.h>

/* libmilter refuses a reply longer than this (code + status + text + 2). */
#define REPLY_LINE_MAX 980
#define REPLY_STATUS_MAX 12 /* "5.999.999" and its NUL */

struct reply_spec {
	int code;                       /* 421, 450, 502, ... */
	char status[REPLY_STATUS_MAX];  /* enhanced status code, "5.5.1" */
	char *text;                     /* template, may name $verb */
};

/* '2', '3', '4', '5' -> "2xx" ...; anything else -> "none". */
const char *reply_class_name(int code);

/* True for a well-formed RFC 3463 enhanced status code "C.S.D". */
bool reply_status_valid(const char *status);

/*
 * Checks a template's text: printable ASCII only (no CR, LF, NUL or other
 * control bytes), not empty, only $verb and $$ as variables.  Returns NULL
 * when fine, else a static reason.
 */
const char *reply_text_problem(const char *text);

/*
 * Writes "CODE STATUS TEXT" with $verb expanded: what the client reads.
 * Returns the length, or -1 if it does not fit in size.
 */
int reply_render(const struct reply_spec *r, const char *verb, char *buf, size_t size);

/*
 * Writes only the expanded text with every '%' doubled, as libmilter's
 * smfi_setreply wants it (the MTA treats the text as a format).
 * Returns the length, or -1 if it does not fit in size.
 */
int reply_render_milter_text(const struct reply_spec *r, const char *verb,
			     char *buf, size_t size);

#endif
