#include "policy.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

static const char *const ACTION_NAMES[] = {
	[ACTION_ALLOW] = "allow",
	[ACTION_LOG] = "log",
	[ACTION_REJECT] = "reject",
	[ACTION_TEMPFAIL] = "tempfail",
	[ACTION_DISCONNECT] = "disconnect",
};

const char *action_name(enum action a)
{
	return ACTION_NAMES[a];
}

int action_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof ACTION_NAMES / sizeof ACTION_NAMES[0]; i++)
		if (strcasecmp(name, ACTION_NAMES[i]) == 0)
			return (int)i;
	return -1;
}

bool action_refuses(enum action a)
{
	return a == ACTION_REJECT || a == ACTION_TEMPFAIL || a == ACTION_DISCONNECT;
}

const struct command_entry *policy_find_command(const struct policy *p,
						const char *verb, size_t len)
{
	if (len == 0 || len > VERB_MAX)
		return NULL;
	for (size_t i = 0; i < p->ncommands; i++) {
		const char *name = p->commands[i].verb;
		if (strncasecmp(name, verb, len) == 0 && name[len] == '\0')
			return &p->commands[i];
	}
	return NULL;
}

static const struct reply_spec *default_reply(const struct policy *p, enum action a)
{
	switch (a) {
	case ACTION_REJECT: return &p->reject_reply;
	case ACTION_TEMPFAIL: return &p->tempfail_reply;
	case ACTION_DISCONNECT: return &p->disconnect_reply;
	default: return NULL;
	}
}

static bool user_listed(char *const *users, const char *user)
{
	if (user == NULL)
		return false;
	for (; *users; users++)
		if (strcmp(*users, user) == 0)
			return true;
	return false;
}

/* The first rule at or after `from` whose clients contain the client. */
static bool next_candidate(const struct policy *p, const struct question *q,
			   unsigned from, size_t *open_pos, unsigned *found)
{
	while (*open_pos < p->nopen_rules && p->open_rules[*open_pos] < from)
		(*open_pos)++;
	bool have_open = *open_pos < p->nopen_rules;
	unsigned by_addr = 0;
	bool have_addr = q->client != NULL &&
			 nettable_first_from(p->clients, q->client, from, &by_addr);
	if (!have_open && !have_addr)
		return false;
	if (have_open && (!have_addr || p->open_rules[*open_pos] < by_addr))
		*found = p->open_rules[*open_pos];
	else
		*found = by_addr;
	return true;
}

/* First rule, in file order, that matches client, verb and user. */
static const struct rule *first_rule(const struct policy *p, const struct question *q,
				     size_t command_index, unsigned *number)
{
	uint64_t bit = UINT64_C(1) << command_index;
	size_t open_pos = 0;
	unsigned i;
	for (unsigned from = 0; next_candidate(p, q, from, &open_pos, &i); from = i + 1) {
		const struct rule *r = &p->rules[i];
		if ((r->verbs & bit) && (r->users == NULL || user_listed(r->users, q->user))) {
			*number = i + 1;
			return r;
		}
	}
	return NULL;
}

void policy_decide(const struct policy *p, const struct question *q, struct verdict *v)
{
	*v = (struct verdict){ .action = ACTION_ALLOW, .source = SOURCE_DEFAULT,
			       .enforced = p->mode == MODE_ENFORCE };
	const struct command_entry *c = policy_find_command(p, q->verb, q->verb_len);
	if (c == NULL)
		return;
	v->command = c;

	unsigned number = 0;
	const struct rule *r = first_rule(p, q, (size_t)(c - p->commands), &number);
	if (r != NULL) {
		v->source = SOURCE_RULE;
		v->rule = number;
		v->action = r->action;
		v->reply = r->reply;
	} else {
		v->source = SOURCE_COMMAND;
		v->action = c->action;
		v->reply = c->reply;
	}

	if (action_refuses(v->action) && p->probes > 0 && q->refused >= p->probes) {
		v->source = SOURCE_LIMIT;
		v->action = p->limit_action;
		v->reply = p->limit_reply ? p->limit_reply : &p->limit_default;
	}
	if (v->reply == NULL)
		v->reply = default_reply(p, v->action);
}

static char LIMIT_TEXT[] = "too many refused commands";
static char LIMIT_CLOSE_TEXT[] = "too many refused commands, closing connection";

void policy_set_limit_default(struct policy *p)
{
	const struct reply_spec *base = default_reply(p, p->limit_action);
	p->limit_default = (struct reply_spec){ base->code, "", NULL };
	strcpy(p->limit_default.status, base->status);
	p->limit_default.text = p->limit_action == ACTION_DISCONNECT ? LIMIT_CLOSE_TEXT : LIMIT_TEXT;
}

static void reply_free(struct reply_spec *r)
{
	if (r != NULL) {
		free(r->text);
		free(r);
	}
}

struct policy *policy_new(void)
{
	struct policy *p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	p->clients = nettable_new();
	p->socket = strdup("unix:/run/milter-cmdgate/milter.sock");
	p->banner = strdup("$j ESMTP $v");
	p->reject_reply = (struct reply_spec){ 502, "5.5.1", strdup("$verb command not implemented") };
	p->tempfail_reply = (struct reply_spec){ 450, "4.7.1", strdup("$verb command temporarily refused") };
	p->disconnect_reply = (struct reply_spec){ 421, "4.7.0", strdup("$verb command refused, closing connection") };
	p->limit_action = ACTION_DISCONNECT;
	policy_set_limit_default(p);
	p->socket_mode = 0660;
	p->syslog_facility = LOG_MAIL;
	if (!p->clients || !p->socket || !p->banner || !p->reject_reply.text ||
	    !p->tempfail_reply.text || !p->disconnect_reply.text) {
		policy_free(p);
		return NULL;
	}
	return p;
}

void policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	free(p->file);
	free(p->socket);
	free(p->policy_socket);
	free(p->socketmap_socket);
	free(p->banner);
	free(p->reject_reply.text);
	free(p->tempfail_reply.text);
	free(p->disconnect_reply.text);
	for (size_t i = 0; i < p->ncommands; i++)
		reply_free(p->commands[i].reply);
	free(p->commands);
	for (size_t i = 0; i < p->nrules; i++) {
		reply_free(p->rules[i].reply);
		if (p->rules[i].users) {
			for (char **u = p->rules[i].users; *u; u++)
				free(*u);
			free(p->rules[i].users);
		}
	}
	free(p->rules);
	free(p->open_rules);
	nettable_free(p->clients);
	reply_free(p->limit_reply);
	free(p);
}
