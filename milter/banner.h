/*
 * banner: rebuilds the 220 greeting from the MTA's macros.  No milter
 * event carries the greeting itself (MTA-FACTS §4), so the policy holds a
 * template matching the MTA's smtpd_banner: "$j ESMTP $v", where $x names
 * a one-letter macro, ${name} a long one ({daemon_name}) and $$ is a dollar.
 */
#ifndef CMDGATE_BANNER_H
#define CMDGATE_BANNER_H

#include <stddef.h>

/* Returns the macro's value or NULL when the MTA did not send it. */
typedef const char *(*macro_lookup)(void *ctx, const char *name);

/* NULL when the template is well formed, else a static reason. */
const char *banner_problem(const char *tmpl);

/*
 * Writes "220 " and the expanded template into out (cut to fit); a macro
 * the MTA did not send expands to nothing.
 */
void banner_expand(const char *tmpl, macro_lookup lookup, void *ctx, char *out, size_t size);

/*
 * Appends the macro names the template uses to `names` (space separated,
 * long names in braces), skipping those already present.  Returns -1 if
 * they do not fit.
 */
int banner_macro_names(const char *tmpl, char *names, size_t size);

#endif
