/*
 * policyproto: Postfix's SMTPD access policy delegation protocol, the
 * pure part.  A request is name=value lines ended by an empty line; many
 * requests may follow on one connection.  Nothing here trusts the bytes:
 * limits are stated and enforced, errors say what was wrong.
 */
#ifndef CMDGATE_POLICYPROTO_H
#define CMDGATE_POLICYPROTO_H

#include <stddef.h>
#include <sys/types.h>

#define POLICY_LINE_MAX 2048      /* bytes in one name=value line */
#define POLICY_REQUEST_MAX 16384  /* bytes in one request */

struct policy_request {
	char text[POLICY_REQUEST_MAX + 1]; /* the request, one NUL-terminated line per attribute */
	/* Attributes used by the door; NULL when absent. */
	const char *request;
	const char *protocol_state;
	const char *client_address;
	const char *client_name;
	const char *sasl_username;
	const char *recipient;
	const char *etrn_domain;
	const char *queue_id;
};

/*
 * Parses the request at the start of in[0..len).  Returns the bytes it
 * took (> 0), 0 when the request is not complete yet, or -1 with *why set
 * to a static reason when the bytes cannot be a valid request (the door
 * then closes the connection).
 */
ssize_t policy_request_parse(const char *in, size_t len, struct policy_request *r,
			     const char **why);

#endif
