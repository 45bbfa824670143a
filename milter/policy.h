/*
 * policy: the loaded policy and the pure verdict function every door asks.
 * No libmilter, no I/O.  A policy is immutable once loaded and shared by
 * reference count, so a reload never changes the policy a session began
 * with.
 */
#ifndef CMDGATE_POLICY_H
#define CMDGATE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netmatch.h"
#include "reply.h"

#define VERB_MAX 16          /* longest verb the policy can name */
#define POLICY_COMMANDS_MAX 64 /* a rule's verbs are a 64-bit set */

enum action {
	ACTION_ALLOW,      /* let the MTA answer */
	ACTION_LOG,        /* same, named so the audit line says it was noted */
	ACTION_REJECT,     /* 5xx */
	ACTION_TEMPFAIL,   /* 4xx */
	ACTION_DISCONNECT, /* 421, the MTA closes */
};

enum policy_mode { MODE_ENFORCE, MODE_AUDIT };

/* Which part of the policy decided. */
enum verdict_source {
	SOURCE_DEFAULT, /* the verb is not under policy */
	SOURCE_RULE,    /* rule number verdict.rule */
	SOURCE_COMMAND, /* the command's own action */
	SOURCE_LIMIT,   /* the probe limit overrode the verdict */
};

struct command_entry {
	char verb[VERB_MAX + 1];   /* upper case */
	enum action action;
	struct reply_spec *reply;  /* NULL: the action's default */
};

struct rule {
	bool any_client;           /* no clients list */
	uint64_t verbs;            /* bit i = commands[i]; all ones = any */
	char **users;              /* NULL = any user; else NULL-terminated */
	enum action action;
	struct reply_spec *reply;  /* NULL: the action's default */
};

struct policy {
	char *file;
	char *socket;
	unsigned socket_mode;
	char *policy_socket;       /* Postfix policy-delegation door; NULL: closed */
	char *socketmap_socket;    /* Sendmail socketmap door; NULL: closed */
	enum policy_mode mode;
	int syslog_facility;
	char *banner;

	/* default replies for reject, tempfail and disconnect */
	struct reply_spec reject_reply, tempfail_reply, disconnect_reply;

	struct command_entry *commands;
	size_t ncommands;

	struct rule *rules;
	size_t nrules;
	struct nettable *clients;  /* prefix -> indices of the rules naming it */
	unsigned *open_rules;      /* indices of the rules without clients, ascending */
	size_t nopen_rules;

	unsigned probes;           /* refused commands before the limit; 0 = no limit */
	unsigned window;           /* seconds a client's refusals count across sessions and doors; 0 = per session */
	enum action limit_action;
	struct reply_spec *limit_reply;  /* NULL: limit_default */
	struct reply_spec limit_default; /* the action's code, a text about the limit */

	int refs;                  /* guarded by the holder of the running policy */
};

/* What a door asks. */
struct question {
	const char *verb;             /* as the client typed it, not terminated */
	size_t verb_len;
	const struct netaddr *client; /* NULL when the MTA gave none */
	const char *user;             /* SASL login name, NULL if none known */
	unsigned refused;             /* commands refused so far (per session or window) */
};

struct verdict {
	enum action action;
	enum verdict_source source;
	unsigned rule;                   /* 1-based, with SOURCE_RULE */
	const struct command_entry *command; /* NULL when not under policy */
	const struct reply_spec *reply;  /* NULL for allow and log */
	bool enforced;                   /* false in audit mode: the door lets it pass */
};

void policy_decide(const struct policy *p, const struct question *q, struct verdict *v);

/* True for reject, tempfail and disconnect. */
bool action_refuses(enum action a);

const char *action_name(enum action a);
/* "reject" -> ACTION_REJECT; -1 for an unknown name. */
int action_from_name(const char *name);

/* The command entry for a verb typed in any case, or NULL. */
const struct command_entry *policy_find_command(const struct policy *p,
						const char *verb, size_t len);

/* Points limit_default at the code and status of limit_action's default reply. */
void policy_set_limit_default(struct policy *p);

/* An empty policy with the built-in defaults; NULL on ENOMEM. */
struct policy *policy_new(void);
void policy_free(struct policy *p);

#endif
