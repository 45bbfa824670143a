#include "config.h"
#include "banner.h"
#include "sockspec.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

const char *const config_known_settings[] = {
	"socket", "socket_mode", "policy_socket", "socketmap_socket", "mode", "syslog_facility", "banner",
	"reply", "reply.code", "reply.status", "reply.text",
	"commands", "commands.VERB.action", "commands.VERB.reply",
	"rules", "rules.clients", "rules.commands", "rules.users", "rules.action", "rules.reply",
	"limits", "limits.probes", "limits.window", "limits.action", "limits.reply",
	NULL,
};

static const char *const TOP_KEYS[] = { "socket", "socket_mode", "policy_socket", "socketmap_socket",
	"mode", "syslog_facility",
	"banner", "reply", "commands", "rules", "limits", NULL };
static const char *const REPLY_KEYS[] = { "code", "status", "text", NULL };
static const char *const COMMAND_KEYS[] = { "action", "reply", NULL };
static const char *const RULE_KEYS[] = { "clients", "commands", "users", "action", "reply", NULL };
static const char *const LIMIT_KEYS[] = { "probes", "window", "action", "reply", NULL };

/* Loading state: the policy being built and where errors go. */
struct loader {
	const char *file;
	struct policy *policy;
	struct config_error *err;
	size_t longest_verb;
};

__attribute__((format(printf, 3, 4)))
static int fail(struct loader *ld, const config_setting_t *where, const char *fmt, ...)
{
	const char *file = where ? config_setting_source_file(where) : NULL;
	snprintf(ld->err->file, sizeof ld->err->file, "%s", file ? file : ld->file);
	ld->err->line = where ? (int)config_setting_source_line(where) : 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->err->message, sizeof ld->err->message, fmt, ap);
	va_end(ap);
	return -1;
}

/*
 * Names a setting inside parent for messages: "reply.code", and after a
 * rule "rule 2: reply.code", the way the other rule messages read.
 */
static const char *setting_path(char *buf, size_t size, const char *parent, const char *name)
{
	const char *sep = *parent == '\0' ? "" : strncmp(parent, "rule ", 5) == 0 &&
			  strchr(parent, ':') == NULL ? ": " : ".";
	snprintf(buf, size, "%s%s%s", parent, sep, name);
	return buf;
}

/* Rejects members of a group that the loader does not know. */
static int check_keys(struct loader *ld, const config_setting_t *group,
		      const char *path, const char *const *known)
{
	char full[160];
	for (int i = 0; i < config_setting_length(group); i++) {
		const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
		const char *name = config_setting_name(s);
		const char *const *k = known;
		while (*k && strcmp(*k, name) != 0)
			k++;
		if (*k == NULL)
			return fail(ld, s, "%s: unknown setting", setting_path(full, sizeof full, path, name));
	}
	return 0;
}

static int want_type(struct loader *ld, const config_setting_t *s, const char *path,
		     int type, const char *what)
{
	if (config_setting_type(s) == type)
		return 0;
	return fail(ld, s, "%s: expected %s", path, what);
}

/* Optional string member; *out untouched when absent. */
static int get_string(struct loader *ld, const config_setting_t *group, const char *name,
		      const char *path, const char **out)
{
	const config_setting_t *s = config_setting_get_member(group, name);
	if (s == NULL)
		return 0;
	if (want_type(ld, s, path, CONFIG_TYPE_STRING, "a string") < 0)
		return -1;
	*out = config_setting_get_string(s);
	return 0;
}

static int replace_string(struct loader *ld, char **slot, const char *value)
{
	char *copy = strdup(value);
	if (copy == NULL)
		return fail(ld, NULL, "out of memory");
	free(*slot);
	*slot = copy;
	return 0;
}

static int parse_action(struct loader *ld, const config_setting_t *group, const char *path,
			bool required, enum action *out)
{
	char apath[160];
	setting_path(apath, sizeof apath, path, "action");
	const config_setting_t *s = config_setting_get_member(group, "action");
	if (s == NULL)
		return required ? fail(ld, group, "%s: missing", apath) : 0;
	if (want_type(ld, s, apath, CONFIG_TYPE_STRING, "a string") < 0)
		return -1;
	int a = action_from_name(config_setting_get_string(s));
	if (a < 0)
		return fail(ld, s, "%s: unknown action \"%s\" (reject, tempfail, disconnect, allow, log)",
			    apath, config_setting_get_string(s));
	*out = (enum action)a;
	return 0;
}

/* Checks that a reply fits the action that sends it and libmilter's limits. */
static int check_reply(struct loader *ld, const config_setting_t *where, const char *path,
		       const struct reply_spec *r, enum action action)
{
	if (action == ACTION_REJECT && (r->code < 500 || r->code > 599))
		return fail(ld, where, "%s.code: %d is not a 5xx code, as action reject needs", path, r->code);
	if (action == ACTION_TEMPFAIL && (r->code < 400 || r->code > 499 || r->code == 421))
		return fail(ld, where, "%s.code: %d is not a 4xx code other than 421, as action tempfail needs (421 is action disconnect)",
			    path, r->code);
	if (action == ACTION_DISCONNECT && r->code != 421)
		return fail(ld, where, "%s.code: %d is not 421, as action disconnect needs", path, r->code);
	if (!reply_status_valid(r->status))
		return fail(ld, where, "%s.status: \"%s\" is not an enhanced status code like 5.5.1", path, r->status);
	if (r->status[0] - '0' != r->code / 100)
		return fail(ld, where, "%s.status: class of \"%s\" does not match code %d", path, r->status, r->code);
	const char *why = reply_text_problem(r->text);
	if (why != NULL)
		return fail(ld, where, "%s.text: %s", path, why);
	char longest[VERB_MAX + 1];
	memset(longest, 'X', ld->longest_verb);
	longest[ld->longest_verb] = '\0';
	char line[REPLY_LINE_MAX + 1];
	size_t head = strlen("502 ") + strlen(r->status) + 1;
	if (reply_render_milter_text(r, longest, line, sizeof line - head) < 0)
		return fail(ld, where, "%s.text: too long: the reply must fit in %d characters, each %% counting twice",
			    path, REPLY_LINE_MAX);
	return 0;
}

/*
 * Reads an optional reply group into a new reply_spec that starts as a copy
 * of `base`; *out stays NULL when the group is absent.
 */
static int parse_reply(struct loader *ld, const config_setting_t *parent, const char *path,
		       const struct reply_spec *base, enum action action, struct reply_spec **out)
{
	const config_setting_t *g = config_setting_get_member(parent, "reply");
	if (g == NULL)
		return 0;
	char rpath[160];
	setting_path(rpath, sizeof rpath, path, "reply");
	if (want_type(ld, g, rpath, CONFIG_TYPE_GROUP, "a group { code = ...; status = ...; text = ...; }") < 0 ||
	    check_keys(ld, g, rpath, REPLY_KEYS) < 0)
		return -1;
	if (action != ACTION_REJECT && action != ACTION_TEMPFAIL && action != ACTION_DISCONNECT)
		return fail(ld, g, "%s: action %s sends no reply", rpath, action_name(action));

	struct reply_spec r = *base;
	const config_setting_t *code = config_setting_get_member(g, "code");
	if (code != NULL) {
		char cpath[170];
		snprintf(cpath, sizeof cpath, "%s.code", rpath);
		if (want_type(ld, code, cpath, CONFIG_TYPE_INT, "an integer") < 0)
			return -1;
		r.code = config_setting_get_int(code);
	}
	const char *status = NULL, *text = NULL;
	char spath[170], tpath[170];
	snprintf(spath, sizeof spath, "%s.status", rpath);
	snprintf(tpath, sizeof tpath, "%s.text", rpath);
	if (get_string(ld, g, "status", spath, &status) < 0 || get_string(ld, g, "text", tpath, &text) < 0)
		return -1;
	if (status != NULL) {
		if (strlen(status) >= sizeof r.status)
			return fail(ld, g, "%s: \"%s\" is not an enhanced status code like 5.5.1", spath, status);
		strcpy(r.status, status);
	}
	if (text != NULL)
		r.text = (char *)text;
	if (check_reply(ld, g, rpath, &r, action) < 0)
		return -1;

	struct reply_spec *copy = malloc(sizeof *copy);
	if (copy == NULL || (r.text = strdup(r.text)) == NULL) {
		free(copy);
		return fail(ld, NULL, "out of memory");
	}
	*copy = r;
	*out = copy;
	return 0;
}

/* An optional door socket: unix:/path, inet:PORT@ADDR or inet6:PORT@[ADDR]. */
static int parse_door_socket(struct loader *ld, const config_setting_t *root, const char *name,
			     char **slot)
{
	const char *s = NULL;
	if (get_string(ld, root, name, name, &s) < 0)
		return -1;
	if (s == NULL)
		return 0;
	const char *why = door_socket_problem(s);
	if (why != NULL)
		return fail(ld, config_setting_get_member(root, name), "%s: \"%s\": %s", name, s, why);
	return replace_string(ld, slot, s);
}

static int parse_top(struct loader *ld, const config_setting_t *root)
{
	struct policy *p = ld->policy;
	const char *s = NULL;

	if (get_string(ld, root, "socket", "socket", &s) < 0)
		return -1;
	if (s != NULL) {
		if (*s == '\0')
			return fail(ld, config_setting_get_member(root, "socket"), "socket: empty");
		if (replace_string(ld, &p->socket, s) < 0)
			return -1;
	}

	s = NULL;
	if (get_string(ld, root, "socket_mode", "socket_mode", &s) < 0)
		return -1;
	if (s != NULL) {
		char *end;
		errno = 0;
		unsigned long m = strtoul(s, &end, 8);
		if (*s == '\0' || *end != '\0' || errno != 0 || m > 0777 || strchr(s, '-') || strchr(s, '+'))
			return fail(ld, config_setting_get_member(root, "socket_mode"),
				    "socket_mode: \"%s\" is not an octal mode like \"0660\"", s);
		p->socket_mode = (unsigned)m;
	}

	if (parse_door_socket(ld, root, "policy_socket", &p->policy_socket) < 0 ||
	    parse_door_socket(ld, root, "socketmap_socket", &p->socketmap_socket) < 0)
		return -1;

	s = NULL;
	if (get_string(ld, root, "mode", "mode", &s) < 0)
		return -1;
	if (s != NULL) {
		if (strcmp(s, "enforce") == 0)
			p->mode = MODE_ENFORCE;
		else if (strcmp(s, "audit") == 0)
			p->mode = MODE_AUDIT;
		else
			return fail(ld, config_setting_get_member(root, "mode"),
				    "mode: unknown mode \"%s\" (enforce, audit)", s);
	}

	s = NULL;
	if (get_string(ld, root, "syslog_facility", "syslog_facility", &s) < 0)
		return -1;
	if (s != NULL) {
		static const struct { const char *name; int value; } FACILITIES[] = {
			{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
			{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
			{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
			{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
		};
		size_t i = 0, n = sizeof FACILITIES / sizeof FACILITIES[0];
		while (i < n && strcmp(FACILITIES[i].name, s) != 0)
			i++;
		if (i == n)
			return fail(ld, config_setting_get_member(root, "syslog_facility"),
				    "syslog_facility: unknown facility \"%s\" (mail, daemon, user, local0 ... local7)", s);
		p->syslog_facility = FACILITIES[i].value;
	}

	s = NULL;
	if (get_string(ld, root, "banner", "banner", &s) < 0)
		return -1;
	if (s != NULL) {
		const char *why = banner_problem(s);
		if (why != NULL)
			return fail(ld, config_setting_get_member(root, "banner"), "banner: %s", why);
		if (replace_string(ld, &p->banner, s) < 0)
			return -1;
	}
	return 0;
}

/* Reads the verbs under policy; their actions come later, see parse_command_actions. */
static int parse_command_names(struct loader *ld, const config_setting_t *root)
{
	struct policy *p = ld->policy;
	const config_setting_t *g = config_setting_get_member(root, "commands");
	if (g == NULL)
		return 0;
	if (want_type(ld, g, "commands", CONFIG_TYPE_GROUP, "a group { VERB = { action = ...; }; }") < 0)
		return -1;
	int n = config_setting_length(g);
	if (n > POLICY_COMMANDS_MAX)
		return fail(ld, g, "commands: more than %d verbs", POLICY_COMMANDS_MAX);
	p->commands = calloc((size_t)n + 1, sizeof *p->commands);
	if (p->commands == NULL)
		return fail(ld, NULL, "out of memory");

	for (int i = 0; i < n; i++) {
		const config_setting_t *c = config_setting_get_elem(g, (unsigned)i);
		const char *name = config_setting_name(c);
		size_t len = strlen(name);
		if (len > VERB_MAX)
			return fail(ld, c, "commands.%s: verb longer than %d characters", name, VERB_MAX);
		for (size_t k = 0; k < len; k++) {
			char ch = name[k];
			if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
				return fail(ld, c, "commands.%s: a verb has only letters and digits", name);
		}
		if (policy_find_command(p, name, len) != NULL)
			return fail(ld, c, "commands.%s: verb listed twice", name);
		struct command_entry *e = &p->commands[p->ncommands++];
		for (size_t k = 0; k <= len; k++)
			e->verb[k] = (name[k] >= 'a' && name[k] <= 'z') ? (char)(name[k] - 'a' + 'A') : name[k];
		if (len > ld->longest_verb)
			ld->longest_verb = len;
	}
	return 0;
}

static const struct reply_spec *base_reply(const struct policy *p, enum action a)
{
	return a == ACTION_TEMPFAIL ? &p->tempfail_reply :
	       a == ACTION_DISCONNECT ? &p->disconnect_reply : &p->reject_reply;
}

/* The top-level reply replaces the built-in default for action reject. */
static int parse_default_reply(struct loader *ld, const config_setting_t *root)
{
	struct policy *p = ld->policy;
	struct reply_spec *r = NULL;
	if (parse_reply(ld, root, "", &p->reject_reply, ACTION_REJECT, &r) < 0)
		return -1;
	if (r != NULL) {
		free(p->reject_reply.text);
		p->reject_reply = *r;
		free(r);
	}
	return 0;
}

static int parse_command_actions(struct loader *ld, const config_setting_t *root)
{
	struct policy *p = ld->policy;
	const config_setting_t *g = config_setting_get_member(root, "commands");
	for (size_t i = 0; i < p->ncommands; i++) {
		const config_setting_t *c = config_setting_get_elem(g, (unsigned)i);
		struct command_entry *e = &p->commands[i];
		char path[64];
		snprintf(path, sizeof path, "commands.%s", config_setting_name(c));
		if (want_type(ld, c, path, CONFIG_TYPE_GROUP, "a group { action = ...; }") < 0 ||
		    check_keys(ld, c, path, COMMAND_KEYS) < 0 ||
		    parse_action(ld, c, path, true, &e->action) < 0)
			return -1;
		if (parse_reply(ld, c, path, base_reply(p, e->action), e->action, &e->reply) < 0)
			return -1;
	}
	return 0;
}

/* A list or array of strings; calls add() for each. */
static int each_string(struct loader *ld, const config_setting_t *s, const char *path,
		       int (*add)(struct loader *, const config_setting_t *, const char *, const char *, void *),
		       void *arg)
{
	int type = config_setting_type(s);
	if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST)
		return fail(ld, s, "%s: expected a list of strings [ \"...\", ... ]", path);
	if (config_setting_length(s) == 0)
		return fail(ld, s, "%s: empty list (leave the setting out to match any)", path);
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return fail(ld, e, "%s: expected a list of strings", path);
		if (add(ld, e, path, config_setting_get_string(e), arg) < 0)
			return -1;
	}
	return 0;
}

static int add_client(struct loader *ld, const config_setting_t *e, const char *path,
		      const char *text, void *arg)
{
	unsigned index = *(unsigned *)arg;
	struct netprefix prefix;
	const char *why;
	if (netprefix_parse(text, &prefix, &why) < 0)
		return fail(ld, e, "%s: \"%s\": %s", path, text, why);
	if (nettable_add(ld->policy->clients, &prefix, index) < 0)
		return fail(ld, NULL, "out of memory");
	return 0;
}

static int add_verb(struct loader *ld, const config_setting_t *e, const char *path,
		    const char *text, void *arg)
{
	const struct command_entry *c = policy_find_command(ld->policy, text, strlen(text));
	if (c == NULL)
		return fail(ld, e, "%s: \"%s\" is not under policy: add it to commands", path, text);
	*(uint64_t *)arg |= UINT64_C(1) << (c - ld->policy->commands);
	return 0;
}

static int add_user(struct loader *ld, const config_setting_t *e, const char *path,
		    const char *text, void *arg)
{
	char ***users = arg;
	size_t n = 0;
	while (*users && (*users)[n])
		n++;
	if (*text == '\0')
		return fail(ld, e, "%s: empty user name", path);
	char **grown = realloc(*users, (n + 2) * sizeof **users);
	if (grown == NULL)
		return fail(ld, NULL, "out of memory");
	*users = grown;
	grown[n + 1] = NULL;
	if ((grown[n] = strdup(text)) == NULL)
		return fail(ld, NULL, "out of memory");
	return 0;
}

static int parse_rules(struct loader *ld, const config_setting_t *root)
{
	struct policy *p = ld->policy;
	const config_setting_t *list = config_setting_get_member(root, "rules");
	if (list == NULL)
		return 0;
	if (config_setting_type(list) != CONFIG_TYPE_LIST)
		return fail(ld, list, "rules: expected a list ( { ... }, { ... } )");
	size_t n = (size_t)config_setting_length(list);
	p->rules = calloc(n + 1, sizeof *p->rules);
	p->open_rules = calloc(n + 1, sizeof *p->open_rules);
	if (p->rules == NULL || p->open_rules == NULL)
		return fail(ld, NULL, "out of memory");

	for (unsigned i = 0; i < n; i++) {
		const config_setting_t *g = config_setting_get_elem(list, i);
		struct rule *r = &p->rules[i];
		p->nrules = i + 1;
		char path[32], sub[48];
		snprintf(path, sizeof path, "rule %u", i + 1);
		if (want_type(ld, g, path, CONFIG_TYPE_GROUP, "a group { clients = [...]; action = ...; }") < 0 ||
		    check_keys(ld, g, path, RULE_KEYS) < 0 ||
		    parse_action(ld, g, path, true, &r->action) < 0)
			return -1;

		const config_setting_t *s = config_setting_get_member(g, "clients");
		r->any_client = s == NULL;
		snprintf(sub, sizeof sub, "%s: clients", path);
		if (s != NULL && each_string(ld, s, sub, add_client, &i) < 0)
			return -1;
		if (r->any_client)
			p->open_rules[p->nopen_rules++] = i;

		r->verbs = UINT64_MAX;
		s = config_setting_get_member(g, "commands");
		snprintf(sub, sizeof sub, "%s: commands", path);
		if (s != NULL) {
			r->verbs = 0;
			if (each_string(ld, s, sub, add_verb, &r->verbs) < 0)
				return -1;
		}

		s = config_setting_get_member(g, "users");
		snprintf(sub, sizeof sub, "%s: users", path);
		if (s != NULL && each_string(ld, s, sub, add_user, &r->users) < 0)
			return -1;

		if (parse_reply(ld, g, path, base_reply(p, r->action), r->action, &r->reply) < 0)
			return -1;
	}
	return 0;
}

static int parse_limits(struct loader *ld, const config_setting_t *root)
{
	struct policy *p = ld->policy;
	const config_setting_t *g = config_setting_get_member(root, "limits");
	if (g == NULL)
		return 0;
	if (want_type(ld, g, "limits", CONFIG_TYPE_GROUP, "a group { probes = N; action = ...; }") < 0 ||
	    check_keys(ld, g, "limits", LIMIT_KEYS) < 0)
		return -1;
	const config_setting_t *s = config_setting_get_member(g, "probes");
	if (s != NULL) {
		if (want_type(ld, s, "limits.probes", CONFIG_TYPE_INT, "an integer") < 0)
			return -1;
		int probes = config_setting_get_int(s);
		if (probes < 0 || probes > 1000000)
			return fail(ld, s, "limits.probes: %d is out of range (0 = no limit)", probes);
		p->probes = (unsigned)probes;
	}
	s = config_setting_get_member(g, "window");
	if (s != NULL) {
		if (want_type(ld, s, "limits.window", CONFIG_TYPE_INT, "an integer (seconds)") < 0)
			return -1;
		int window = config_setting_get_int(s);
		if (window < 0 || window > 7 * 86400)
			return fail(ld, s, "limits.window: %d is out of range (0 = per session, at most 604800 s)", window);
		p->window = (unsigned)window;
	}
	if (parse_action(ld, g, "limits", false, &p->limit_action) < 0)
		return -1;
	if (!action_refuses(p->limit_action))
		return fail(ld, config_setting_get_member(g, "action"),
			    "limits.action: must refuse (reject, tempfail, disconnect)");
	policy_set_limit_default(p);
	return parse_reply(ld, g, "limits", &p->limit_default, p->limit_action, &p->limit_reply);
}

struct policy *config_load(const char *file, struct config_error *err)
{
	memset(err, 0, sizeof *err);
	snprintf(err->file, sizeof err->file, "%s", file);
	struct loader ld = { .file = file, .err = err };

	config_t cfg;
	config_init(&cfg);
	if (!config_read_file(&cfg, file)) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO) {
			snprintf(err->message, sizeof err->message, "cannot read: %s", strerror(errno));
		} else {
			const char *f = config_error_file(&cfg);
			snprintf(err->file, sizeof err->file, "%s", f ? f : file);
			err->line = config_error_line(&cfg);
			snprintf(err->message, sizeof err->message, "syntax error: %s", config_error_text(&cfg));
		}
		config_destroy(&cfg);
		return NULL;
	}

	ld.policy = policy_new();
	const config_setting_t *root = config_root_setting(&cfg);
	int rc = -1;
	if (ld.policy == NULL)
		fail(&ld, NULL, "out of memory");
	else if (check_keys(&ld, root, "", TOP_KEYS) == 0 &&
		 parse_top(&ld, root) == 0 &&
		 parse_command_names(&ld, root) == 0 &&
		 parse_default_reply(&ld, root) == 0 &&
		 parse_command_actions(&ld, root) == 0 &&
		 parse_rules(&ld, root) == 0 &&
		 parse_limits(&ld, root) == 0)
		rc = 0;
	config_destroy(&cfg);
	if (rc == 0)
		ld.policy->file = strdup(file);
	if (rc < 0 || ld.policy->file == NULL) {
		if (rc == 0)
			fail(&ld, NULL, "out of memory");
		policy_free(ld.policy);
		return NULL;
	}
	return ld.policy;
}

void config_error_format(const struct config_error *err, char *buf, size_t size)
{
	if (err->line > 0)
		snprintf(buf, size, "%s:%d: %s", err->file, err->line, err->message);
	else
		snprintf(buf, size, "%s: %s", err->file, err->message);
}
