/*
 * cmdline: splits an SMTP command line, as the MTA handed it to the milter,
 * into verb and argument.  Postfix 3.7 passes the verb only, Postfix 3.10+
 * and Sendmail the whole line; both land here.  Pure code: pointers into
 * the caller's string, nothing copied, nothing trusted.
 */
#ifndef CMDGATE_CMDLINE_H
#define CMDGATE_CMDLINE_H

#include <stddef.h>

struct command_line {
	const char *verb; /* first run of non-blank bytes, may be empty */
	size_t verb_len;
	const char *arg;  /* the rest after blanks, trailing blanks and CR/LF cut */
	size_t arg_len;   /* 0: no argument */
};

void cmdline_parse(const char *line, struct command_line *out);

#endif
