/*
 * Fuzz target: the policy-file loader.  libconfig text in, a loaded policy
 * or a FILE:LINE error out.  A policy that loads must keep the promises
 * the doors rely on without checking again: every reply renders within
 * libmilter's 980 characters with the longest verb under policy, its code
 * agrees with its action, its status and text are valid.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "policy.h"
#include "reply.h"

static int fd = -1;
static char path[64];

static void check_reply(const struct reply_spec *r, enum action a, const char *verb)
{
	if (r == NULL)
		return;
	char line[REPLY_LINE_MAX + 1];
	if (reply_render(r, verb, line, sizeof line) < 0 ||
	    reply_render_milter_text(r, verb, line, sizeof line) < 0 ||
	    !reply_status_valid(r->status) || reply_text_problem(r->text) != NULL ||
	    r->status[0] - '0' != r->code / 100)
		abort();
	if ((a == ACTION_REJECT && r->code / 100 != 5) ||
	    (a == ACTION_TEMPFAIL && (r->code / 100 != 4 || r->code == 421)) ||
	    (a == ACTION_DISCONNECT && r->code != 421))
		abort();
}

static void check_policy(const struct policy *p)
{
	char longest[VERB_MAX + 1] = "";
	for (size_t i = 0; i < p->ncommands; i++)
		if (strlen(p->commands[i].verb) > strlen(longest))
			strcpy(longest, p->commands[i].verb);
	check_reply(&p->reject_reply, ACTION_REJECT, longest);
	for (size_t i = 0; i < p->ncommands; i++) {
		const struct command_entry *c = &p->commands[i];
		if (policy_find_command(p, c->verb, strlen(c->verb)) != c)
			abort();
		check_reply(c->reply, c->action, longest);
	}
	for (size_t i = 0; i < p->nrules; i++)
		check_reply(p->rules[i].reply, p->rules[i].action, longest);
	check_reply(p->limit_reply, p->limit_action, longest);

	/* Every verb under policy gets a verdict whose reply is whole. */
	struct netaddr a;
	netaddr_parse("192.0.2.1", &a);
	for (size_t i = 0; i < p->ncommands; i++) {
		for (unsigned refused = 0; refused < 3; refused++) {
			struct question q = { .verb = p->commands[i].verb,
					      .verb_len = strlen(p->commands[i].verb),
					      .client = refused == 1 ? NULL : &a, .refused = refused };
			struct verdict v;
			policy_decide(p, &q, &v);
			if (v.command != &p->commands[i] || (action_refuses(v.action) != (v.reply != NULL)))
				abort();
			if (v.reply != NULL)
				check_reply(v.reply, v.action, longest);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("policy", 0);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	/* @include reads other files: the file system, not the parser under test. */
	if (memmem(data, size, "@include", 8) != NULL)
		return 0;
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();

	struct config_error err;
	struct policy *p = config_load(path, &err);
	if (p == NULL) {
		char text[1024];
		config_error_format(&err, text, sizeof text);
		if (err.line < 0 || strlen(text) >= sizeof text || err.message[0] == '\0')
			abort();
		return 0;
	}
	check_policy(p);
	policy_free(p);
	return 0;
}
