/*
 * explain: what an SMTP reply code or enhanced status code means, for the
 * `milter-cmdgate explain CODE...` subcommand.  One table, pure lookups,
 * output only to the FILE handed in.
 */
#ifndef CMDGATE_EXPLAIN_H
#define CMDGATE_EXPLAIN_H

#include <stdio.h>

struct explanation {
	const char *code;    /* "502", or an enhanced status code "5.5.1" */
	const char *name;    /* short name */
	const char *meaning;
	const char *when;    /* when a client sees it */
	const char *todo;    /* what to do about it */
};

enum explain_result {
	EXPLAIN_FOUND,
	EXPLAIN_MALFORMED, /* neither NNN nor C.S.D */
	EXPLAIN_UNKNOWN,   /* well-formed, not in the table */
};

/* Every entry, ending with one whose code is NULL. */
extern const struct explanation explain_table[];

/* Looks CODE up; *out is set only with EXPLAIN_FOUND. */
enum explain_result explain_lookup(const char *code, const struct explanation **out);

/* "5xx permanent negative" for "550" or "5.7.1"; NULL for a malformed code. */
const char *explain_class(const char *code);

/* One code: its name, then class, meaning, when seen, what to do. */
void explain_print_one(FILE *out, const struct explanation *e);

/* Two codes side by side, row by row. */
void explain_print_pair(FILE *out, const struct explanation *a, const struct explanation *b);

/*
 * The subcommand: ARGS are the codes (argv after "explain").  Checks them
 * all before printing anything; errors go to ERR.  Returns the exit status:
 * 0, or 64 (EX_USAGE) for no code, a malformed one or an unknown one.
 */
int explain_main(int nargs, char *const args[], FILE *out, FILE *err);

#endif
