/*
 * events: the audit lines every door writes, so the milter, policy and
 * socketmap doors report a command in exactly the same words.
 */
#ifndef CMDGATE_EVENTS_H
#define CMDGATE_EVENTS_H

#include "cmdline.h"
#include "policy.h"

struct command_event {
	const char *queue_id;           /* NULL: NOQUEUE */
	const char *door;               /* "milter", "policy", "socketmap" */
	const char *session;            /* NULL: the door has no sessions */
	const struct command_line *cmd; /* verb and argument as the client sent them */
	const char *client;             /* address text, or "unknown" */
	const char *user;               /* SASL login, NULL when none */
	const struct verdict *verdict;
	const char *mta_reply;          /* what the client read instead, if the MTA replaced it */
};

/*
 * event=command ... : the verb as the policy names it (as typed, escaped,
 * when not under policy), its argument only when under policy, the rule,
 * action, reply and class, then mta_reply when the MTA replaced the reply.
 */
void event_command(const struct command_event *e);

#endif
