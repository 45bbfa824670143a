#include "policydoor.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "cmdline.h"
#include "events.h"
#include "log.h"
#include "probes.h"
#include "running.h"

static int answer_line(struct outbuf *out, const char *action)
{
	char line[REPLY_LINE_MAX + 16];
	int n = snprintf(line, sizeof line, "action=%s\n\n", action);
	return outbuf_add(out, line, (size_t)n);
}

int policy_door_answer(const struct policy_request *r, struct outbuf *out)
{
	const char *state = r->protocol_state ? r->protocol_state : "";
	const char *arg;
	if (strcasecmp(state, "VRFY") == 0)
		arg = r->recipient;
	else if (strcasecmp(state, "ETRN") == 0)
		arg = r->etrn_domain;
	else
		return answer_line(out, "DUNNO"); /* mail: not this door's business */

	struct command_line cmd = { .verb = state, .verb_len = strlen(state),
				    .arg = arg ? arg : "", .arg_len = arg ? strlen(arg) : 0 };
	struct netaddr addr;
	const char *client = r->client_address ? r->client_address : "unknown";
	bool has_addr = netaddr_parse(client, &addr) == 0;
	char client_text[NETADDR_TEXT_MAX];
	if (has_addr) {
		netaddr_format(&addr, client_text, sizeof client_text);
		client = client_text;
	}
	const char *user = r->sasl_username && *r->sasl_username ? r->sasl_username : NULL;

	struct policy *p = running_acquire();
	struct question q = { .verb = cmd.verb, .verb_len = cmd.verb_len,
			      .client = has_addr ? &addr : NULL, .user = user };
	struct verdict v;
	probes_decide(running_probe_table(), p, &q, time(NULL), &v);
	event_command(&(struct command_event){
		.queue_id = r->queue_id && *r->queue_id ? r->queue_id : NULL,
		.door = "policy", .cmd = &cmd, .client = client, .user = user, .verdict = &v,
	});

	int rc;
	if (!v.enforced || !action_refuses(v.action)) {
		rc = answer_line(out, "DUNNO");
	} else {
		char reply[REPLY_LINE_MAX + 1];
		reply_render(v.reply, v.command->verb, reply, sizeof reply);
		rc = answer_line(out, reply);
	}
	running_release(p);
	return rc;
}

/* The request buffer is large; the door server runs one thread, so one suffices. */
static struct policy_request request;

static ssize_t serve(const char *in, size_t len, struct outbuf *out, const char *peer)
{
	const char *why = NULL;
	ssize_t n = policy_request_parse(in, len, &request, &why);
	if (n < 0) {
		log_msg(LOG_WARNING, "policy door: %s: bad request: %s; closing the connection", peer, why);
		return -1;
	}
	if (n > 0 && policy_door_answer(&request, out) < 0) {
		log_msg(LOG_ERR, "policy door: %s: out of memory; closing the connection", peer);
		return -1;
	}
	return n;
}

const struct door_protocol policy_door = {
	.name = "policy",
	.max_pending = POLICY_REQUEST_MAX + 2,
	.serve = serve,
};
