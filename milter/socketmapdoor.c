#include "socketmapdoor.h"

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

/* "OK " and a quoted reply whose every byte may be escaped. */
#define ANSWER_MAX (3 + 2 * REPLY_LINE_MAX + 3)

static int answer(struct outbuf *out, const char *text)
{
	char line[ANSWER_MAX + 16];
	int n = netstring_write(line, sizeof line, text, strlen(text));
	return n < 0 ? -1 : outbuf_add(out, line, (size_t)n);
}

int socketmap_door_answer(const struct socketmap_query *q, struct outbuf *out)
{
	/*
	 * {client_addr} as Sendmail 8.17 writes it: "127.0.0.1", an IPv6
	 * client as "IPv6:0:0:0:0:0:0:0:1" (lower-cased by a map without -f),
	 * and "0" for a session on standard input (sendmail -bs), which has no
	 * address and is audited as "unknown", as the milter door does.
	 */
	char client_raw[64];
	const char *c = q->client;
	size_t c_len = q->client_len;
	if (c_len > 5 && strncasecmp(c, "ipv6:", 5) == 0) {
		c += 5;
		c_len -= 5;
	}
	struct netaddr addr;
	bool has_addr = false;
	char client_text[NETADDR_TEXT_MAX];
	if (c_len < sizeof client_raw) {
		memcpy(client_raw, c, c_len);
		client_raw[c_len] = '\0';
		has_addr = netaddr_parse(client_raw, &addr) == 0;
	}
	if (has_addr)
		netaddr_format(&addr, client_text, sizeof client_text);
	else
		snprintf(client_text, sizeof client_text, "unknown");

	struct command_line cmd = { .verb = q->verb, .verb_len = q->verb_len,
				    .arg = q->arg, .arg_len = q->arg_len };
	struct policy *p = running_acquire();
	struct question question = { .verb = q->verb, .verb_len = q->verb_len,
				     .client = has_addr ? &addr : NULL };
	struct verdict v;
	probes_decide(running_probe_table(), p, &question, time(NULL), &v);
	event_command(&(struct command_event){
		.door = "socketmap", .cmd = &cmd, .client = client_text, .verdict = &v,
	});

	int rc;
	if (!v.enforced || !action_refuses(v.action)) {
		rc = answer(out, "NOTFOUND ");
	} else {
		/* Quoted, so that Sendmail keeps the text as it is. */
		char reply[REPLY_LINE_MAX + 1], value[ANSWER_MAX + 1] = "OK ";
		reply_render(v.reply, v.command->verb, reply, sizeof reply);
		rc = socketmap_quote(reply, value + 3, sizeof value - 3) < 0 ? -1 : answer(out, value);
	}
	running_release(p);
	return rc;
}

static ssize_t serve(const char *in, size_t len, struct outbuf *out, const char *peer)
{
	const char *data, *why = NULL;
	size_t data_len;
	ssize_t n = netstring_parse(in, len, &data, &data_len, &why);
	if (n < 0) {
		/* The framing is lost: say PERM once and close. */
		log_msg(LOG_WARNING, "socketmap door: %s: bad request: %s; closing the connection", peer, why);
		answer(out, "PERM bad request");
		return -1;
	}
	if (n == 0)
		return 0;
	struct socketmap_query q;
	if (socketmap_query_parse(data, data_len, &q, &why) < 0) {
		log_msg(LOG_WARNING, "socketmap door: %s: bad request: %s", peer, why);
		return answer(out, "PERM bad request") < 0 ? -1 : n;
	}
	return socketmap_door_answer(&q, out) < 0 ? -1 : n;
}

const struct door_protocol socketmap_door = {
	.name = "socketmap",
	.max_pending = SOCKETMAP_REQUEST_MAX + 16,
	.serve = serve,
};
