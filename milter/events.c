#include "events.h"

#include "audit.h"

void event_command(const struct command_event *e)
{
	const struct verdict *v = e->verdict;
	const char *verb = v->command ? v->command->verb : NULL;
	char reply[REPLY_LINE_MAX + 1] = "none";
	if (v->reply != NULL && reply_render(v->reply, verb, reply, sizeof reply) < 0)
		reply[0] = '\0'; /* cannot happen: the loader checked the length */

	struct audit_line l;
	audit_start(&l, e->queue_id);
	audit_put(&l, "event", "command");
	audit_put(&l, "door", e->door);
	if (e->session != NULL)
		audit_put(&l, "session", e->session);
	if (verb != NULL)
		audit_put(&l, "verb", verb);
	else
		audit_putn(&l, "verb", e->cmd->verb, e->cmd->verb_len);
	/* The argument of a verb not under policy may be a password (AUTH PLAIN). */
	if (verb != NULL && e->cmd->arg_len > 0)
		audit_putn(&l, "arg", e->cmd->arg, e->cmd->arg_len);
	audit_put(&l, "client", e->client);
	if (e->user != NULL)
		audit_put(&l, "user", e->user);
	switch (v->source) {
	case SOURCE_DEFAULT: audit_put(&l, "rule", "default"); break;
	case SOURCE_COMMAND: audit_put(&l, "rule", "command"); break;
	case SOURCE_LIMIT: audit_put(&l, "rule", "limit"); break;
	case SOURCE_RULE: audit_putu(&l, "rule", v->rule); break;
	}
	audit_put(&l, "action", action_name(v->action));
	audit_put(&l, "reply", reply);
	audit_put(&l, "class", v->reply ? reply_class_name(v->reply->code) : "none");
	if (e->mta_reply != NULL)
		audit_put(&l, "mta_reply", e->mta_reply);
	if (!v->enforced)
		audit_put(&l, "mode", "audit");
	audit_emit(&l);
}
