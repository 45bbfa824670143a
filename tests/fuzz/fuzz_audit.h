/*
 * What the fuzz targets share: the log seam and the audit line checks.
 * fuzz_audit.c defines log_msg() (and log_set_facility()), so audit lines
 * land in fuzz_log instead of syslog; log.c is not linked.
 */
#ifndef FUZZ_AUDIT_H
#define FUZZ_AUDIT_H

#include <stddef.h>

#include "audit.h"

extern char fuzz_log[2 * AUDIT_LINE_MAX]; /* the last line logged */
extern int fuzz_lines;                     /* lines logged so far */

/*
 * Aborts unless line is one line of printable ASCII shaped "PREFIX:" then
 * " key=value" pairs (a value bare or double-quoted).  Returns key's value
 * as written (escaped, quotes kept) and its length in *len, or NULL.
 */
const char *fuzz_audit_field(const char *line, const char *key, size_t *len);

/* Loads a policy from text through a memfd (aborts if it does not load). */
struct policy *fuzz_load_policy(const char *text);

#endif
