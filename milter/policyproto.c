#include "policyproto.h"

#include <string.h>

/* Attributes the door reads, and where each goes. */
static const char **slot_for(struct policy_request *r, const char *name, size_t len)
{
	static const struct { const char *name; size_t offset; } FIELDS[] = {
		{ "request", offsetof(struct policy_request, request) },
		{ "protocol_state", offsetof(struct policy_request, protocol_state) },
		{ "client_address", offsetof(struct policy_request, client_address) },
		{ "client_name", offsetof(struct policy_request, client_name) },
		{ "sasl_username", offsetof(struct policy_request, sasl_username) },
		{ "recipient", offsetof(struct policy_request, recipient) },
		{ "etrn_domain", offsetof(struct policy_request, etrn_domain) },
		{ "queue_id", offsetof(struct policy_request, queue_id) },
	};
	for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++)
		if (strlen(FIELDS[i].name) == len && memcmp(FIELDS[i].name, name, len) == 0)
			return (const char **)((char *)r + FIELDS[i].offset);
	return NULL;
}

ssize_t policy_request_parse(const char *in, size_t len, struct policy_request *r,
			     const char **why)
{
	/* Find the end of the request: an empty line. */
	size_t end = 0, line_start = 0;
	for (;; end++) {
		if (end >= len || end > POLICY_REQUEST_MAX) {
			if (end > POLICY_REQUEST_MAX) {
				*why = "request longer than 16384 bytes";
				return -1;
			}
			if (end - line_start > POLICY_LINE_MAX) {
				*why = "line longer than 2048 bytes";
				return -1;
			}
			return 0;
		}
		if (in[end] == '\0') {
			*why = "NUL byte in request";
			return -1;
		}
		if (in[end] != '\n')
			continue;
		size_t line_len = end - line_start;
		if (line_len > 0 && in[end - 1] == '\r')
			line_len--;
		if (line_len > POLICY_LINE_MAX) {
			*why = "line longer than 2048 bytes";
			return -1;
		}
		if (line_len == 0)
			break;
		line_start = end + 1;
	}

	r->request = r->protocol_state = r->client_address = r->client_name = NULL;
	r->sasl_username = r->recipient = r->etrn_domain = r->queue_id = NULL;
	/* The attribute lines, each ending in '\n', without the empty line. */
	size_t body = line_start;
	memcpy(r->text, in, body);
	r->text[body] = '\0';

	for (char *line = r->text; line < r->text + body;) {
		char *nl = memchr(line, '\n', (size_t)(r->text + body - line));
		*nl = '\0';
		if (nl > line && nl[-1] == '\r')
			nl[-1] = '\0';
		char *eq = strchr(line, '=');
		if (eq == NULL || eq == line) {
			*why = "line is not name=value";
			return -1;
		}
		const char **slot = slot_for(r, line, (size_t)(eq - line));
		if (slot != NULL)
			*slot = eq + 1;
		line = nl + 1;
	}
	if (r->request == NULL) {
		*why = "no request= attribute";
		return -1;
	}
	if (strcmp(r->request, "smtpd_access_policy") != 0) {
		*why = "request= is not smtpd_access_policy";
		return -1;
	}
	return (ssize_t)end + 1;
}
