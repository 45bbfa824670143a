/*
 * socketmapproto: Sendmail's socketmap protocol, the pure part.  Requests
 * and answers are netstrings ("LEN:DATA,"); a request is "MAPNAME KEY".
 * milter-cmdgate's key is "verb/client-address/argument", as the
 * check_vrfy and check_expn rulesets in conf/ build it (MTA-FACTS §8).
 */
#ifndef CMDGATE_SOCKETMAPPROTO_H
#define CMDGATE_SOCKETMAPPROTO_H

#include <stddef.h>
#include <sys/types.h>

#define SOCKETMAP_REQUEST_MAX 4096 /* bytes of one request's "MAPNAME KEY" */
#define SOCKETMAP_NAME "cmdgate"

/*
 * Finds the netstring at the start of in[0..len).  Returns the bytes it
 * takes (> 0) with *data and *data_len set, 0 when incomplete, -1 with *why
 * when the bytes cannot be a netstring of at most SOCKETMAP_REQUEST_MAX.
 */
ssize_t netstring_parse(const char *in, size_t len, const char **data, size_t *data_len,
			const char **why);

/* Writes s[0..n) as a netstring into out; returns its length or -1 if it does not fit. */
int netstring_write(char *out, size_t size, const char *s, size_t n);

/*
 * Writes s as a double-quoted Sendmail token: '"' and '\\' get a backslash,
 * so that the ruleset hands the text back exactly (MTA-FACTS §8: unquoted,
 * Sendmail re-tokenises it).  Returns the length or -1 if it does not fit.
 */
int socketmap_quote(const char *s, char *out, size_t size);

struct socketmap_query {
	const char *verb, *client, *arg; /* pointers into the request */
	size_t verb_len, client_len, arg_len;
};

/*
 * Splits "cmdgate verb/client/arg" (on the first two '/'; IPv6 addresses
 * have none).  Returns 0, or -1 with *why (wrong map name, no key, ...).
 */
int socketmap_query_parse(const char *data, size_t len, struct socketmap_query *q,
			  const char **why);

#endif
