#include "callbacks.h"

#include <libmilter/mfapi.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "audit.h"
#include "banner.h"
#include "capacity.h"
#include "cmdline.h"
#include "events.h"
#include "log.h"
#include "mta.h"
#include "netmatch.h"
#include "policy.h"
#include "probes.h"
#include "running.h"

/* Macros the audit lines use on top of those the banner template names. */
#define CONNECT_MACROS "j v _ {client_addr} {client_name} {daemon_name}"
/* One byte more than the audit keeps, so that a longer name shows its cut. */
#define HELO_MAX (AUDIT_VALUE_MAX + 1)

struct session {
	struct policy *policy;     /* the policy this session started with */
	char id[17];
	char client[NETADDR_TEXT_MAX];
	struct netaddr addr;
	bool has_addr;
	struct mta mta;            /* what the MTA does with our replies */
	char helo[HELO_MAX + 1];
	char finished_queue_id[32]; /* libmilter keeps "i" after the message ends */
	unsigned commands, refused;
	unsigned by_class[4];      /* replies caused: 2xx, 3xx, 4xx, 5xx */
};

static atomic_ulong next_session = 1;

/* The MTA's queue id of the message in progress, or NULL between messages. */
static const char *queue_id(SMFICTX *ctx, const struct session *s)
{
	const char *id = smfi_getsymval(ctx, "i");
	if (id == NULL || strcmp(id, s->finished_queue_id) == 0)
		return NULL;
	return id;
}

/* End of a message or of a transaction: its queue id is no longer current. */
static sfsistat on_message_end(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);
	const char *id = smfi_getsymval(ctx, "i");
	if (s != NULL && id != NULL)
		snprintf(s->finished_queue_id, sizeof s->finished_queue_id, "%s", id);
	return SMFIS_CONTINUE;
}

static void count_reply(struct session *s, int code)
{
	int cls = code / 100;
	if (cls >= 2 && cls <= 5)
		s->by_class[cls - 2]++;
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			     unsigned long f2, unsigned long f3, unsigned long *pf0,
			     unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	(void)f0;
	(void)f2;
	(void)f3;
	/* Only connect, HELO, unknown commands and close are of use: skip the rest. */
	unsigned long skip = SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS |
			     SMFIP_NOEOH | SMFIP_NODATA;
	/*
	 * HELO is only noted, never answered: the MTA need not wait for a reply
	 * (a round trip per SMTP session; libmilter stands in for an MTA
	 * without this feature).
	 */
	unsigned long no_reply = SMFIP_NR_HELO;
	*pf0 = 0;          /* no message modifications */
	*pf1 = (skip | no_reply) & f1;  /* only what the MTA offers */
	*pf2 = 0;
	*pf3 = 0;

	char names[512] = CONNECT_MACROS;
	struct policy *p = running_acquire();
	if (p != NULL && banner_macro_names(p->banner, names, sizeof names) < 0)
		log_msg(LOG_WARNING, "banner template names too many macros; some are not requested");
	running_release(p);
	if (smfi_setsymlist(ctx, SMFIM_CONNECT, names) != MI_SUCCESS)
		log_msg(LOG_WARNING, "the MTA does not take a macro list; add them to milter_connect_macros");
	return SMFIS_CONTINUE;
}

static const char *lookup_macro(void *ctx, const char *name)
{
	return smfi_getsymval(ctx, (char *)name);
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	if (!capacity_enter())
		return SMFIS_TEMPFAIL;
	struct session *s = calloc(1, sizeof *s);
	if (s == NULL || (s->policy = running_acquire()) == NULL) {
		log_msg(LOG_ERR, "cannot start a session: out of memory");
		free(s);
		capacity_leave();
		return SMFIS_TEMPFAIL;
	}
	snprintf(s->id, sizeof s->id, "%lx", atomic_fetch_add(&next_session, 1));
	s->has_addr = netaddr_from_sockaddr(hostaddr, &s->addr) == 0;
	if (s->has_addr)
		netaddr_format(&s->addr, s->client, sizeof s->client);
	else
		strcpy(s->client, "unknown");
	mta_identify(&s->mta, smfi_getsymval(ctx, "v"));
	smfi_setpriv(ctx, s);

	char banner[512];
	banner_expand(s->policy->banner, lookup_macro, ctx, banner, sizeof banner);
	count_reply(s, 220);

	struct audit_line l;
	audit_start(&l, queue_id(ctx, s));
	audit_put(&l, "event", "connect");
	audit_put(&l, "door", "milter");
	audit_put(&l, "session", s->id);
	audit_put(&l, "client", s->client);
	audit_put(&l, "name", hostname ? hostname : "unknown");
	audit_put(&l, "banner", banner);
	audit_put(&l, "class", "2xx");
	audit_emit(&l);
	return SMFIS_CONTINUE;
}

static sfsistat on_helo(SMFICTX *ctx, char *name)
{
	struct session *s = smfi_getpriv(ctx);
	if (s != NULL && name != NULL)
		snprintf(s->helo, sizeof s->helo, "%s", name);
	return SMFIS_NOREPLY; /* negotiated: SMFIP_NR_HELO */
}

static sfsistat on_unknown(SMFICTX *ctx, const char *line)
{
	struct session *s = smfi_getpriv(ctx);
	if (s == NULL)
		return SMFIS_CONTINUE;

	struct command_line cmd;
	cmdline_parse(line, &cmd);
	struct question q = {
		.verb = cmd.verb, .verb_len = cmd.verb_len,
		.client = s->has_addr ? &s->addr : NULL,
		.refused = s->refused,
	};
	struct verdict v;
	probes_decide(running_probe_table(), s->policy, &q, time(NULL), &v);
	s->commands++;

	if (action_refuses(v.action)) {
		s->refused++;
		count_reply(s, v.reply->code);
	}
	event_command(&(struct command_event){
		.queue_id = queue_id(ctx, s), .door = "milter", .session = s->id,
		.cmd = &cmd, .client = s->client, .verdict = &v,
		.mta_reply = v.reply ? mta_unknown_reply(&s->mta, v.reply->code) : NULL,
	});

	if (!v.enforced || !action_refuses(v.action))
		return SMFIS_CONTINUE; /* never ACCEPT or DISCARD here: MTA-FACTS §2 */

	char code[4], text[REPLY_LINE_MAX + 1];
	snprintf(code, sizeof code, "%d", v.reply->code);
	if (reply_render_milter_text(v.reply, v.command->verb, text, sizeof text) < 0 ||
	    smfi_setreply(ctx, code, (char *)v.reply->status, text) != MI_SUCCESS)
		log_msg(LOG_ERR, "session %s: the MTA will send its default refusal: reply not accepted by libmilter",
			s->id);
	return v.reply->code >= 500 ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

static sfsistat on_close(SMFICTX *ctx)
{
	struct session *s = smfi_getpriv(ctx);
	if (s == NULL)
		return SMFIS_CONTINUE;
	smfi_setpriv(ctx, NULL);

	struct audit_line l;
	audit_start(&l, queue_id(ctx, s));
	audit_put(&l, "event", "close");
	audit_put(&l, "door", "milter");
	audit_put(&l, "session", s->id);
	audit_put(&l, "client", s->client);
	if (s->helo[0] != '\0')
		audit_put(&l, "helo", s->helo);
	audit_putu(&l, "commands", s->commands);
	audit_putu(&l, "refused", s->refused);
	audit_putu(&l, "2xx", s->by_class[0]);
	audit_putu(&l, "3xx", s->by_class[1]);
	audit_putu(&l, "4xx", s->by_class[2]);
	audit_putu(&l, "5xx", s->by_class[3]);
	if (s->policy->mode == MODE_AUDIT)
		audit_put(&l, "mode", "audit");
	audit_emit(&l);

	running_release(s->policy);
	free(s);
	capacity_leave();
	return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
	.xxfi_name = "milter-cmdgate",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = 0,
	.xxfi_connect = on_connect,
	.xxfi_helo = on_helo,
	.xxfi_close = on_close,
	.xxfi_eom = on_message_end,
	.xxfi_abort = on_message_end,
	.xxfi_unknown = on_unknown,
	.xxfi_negotiate = on_negotiate,
};

int callbacks_register(void)
{
	return smfi_register(filter) == MI_SUCCESS ? 0 : -1;
}
