#include "explain.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <sysexits.h>

#include "reply.h"

/*
 * Every reply code of RFC 5321, 521 and 556 of RFC 7504, and the enhanced
 * status codes (RFC 3463) milter-cmdgate sends or meets beside the MTA's.
 * The names are the codes' usual short names; the rest is ours.
 */
const struct explanation explain_table[] = {
	{ "211", "System status, or system help reply",
	  "A report on the server's status, or a reply to a request for help about the system; "
	  "the text is free-form and meant for a person.",
	  "Rarely: a few servers answer HELP with an argument, or a site-specific status query, with 211.",
	  "Nothing: it reports, it does not refuse. Read the text." },
	{ "214", "Help message",
	  "Help text about the server or one of its commands, meant for a person at a terminal.",
	  "In answer to HELP (Sendmail, and Postfix 3.9 and later, answer it themselves).",
	  "Nothing. Software never needs it; a client that asks for HELP is usually a person or a scanner." },
	{ "220", "Service ready",
	  "The server is ready: the client may go on with EHLO or HELO. After STARTTLS it means "
	  "\"start the TLS handshake now\".",
	  "As the greeting (the banner), first thing after the TCP connection opens; and after STARTTLS.",
	  "Nothing. milter-cmdgate writes the banner on each connect audit line: keep the policy's "
	  "banner the same as the MTA's smtpd_banner." },
	{ "221", "Service closing transmission channel",
	  "The server ends the session in good order.",
	  "In answer to QUIT.",
	  "Nothing; the client closes the connection." },
	{ "250", "Requested mail action okay, completed",
	  "The command did what was asked.",
	  "After EHLO, HELO, MAIL, RCPT, RSET, NOOP, a VRFY or EXPN the server chooses to answer, "
	  "and after the final dot of DATA (the message was taken).",
	  "Nothing. After DATA the receiving server is responsible for the message." },
	{ "251", "User not local; will forward",
	  "The recipient is accepted, and the server will pass the message on to another address itself.",
	  "After RCPT TO, on servers that forward mail for a moved user and say so.",
	  "Nothing; delivery goes on. Update the address book if the move is for good." },
	{ "252", "Cannot VRFY user, but will accept message and attempt delivery",
	  "The server neither confirms nor denies that the address exists, but will take mail for it; "
	  "an address harvester learns nothing.",
	  "After VRFY on servers that keep their users private (Postfix answers 252 to any "
	  "well-formed address).",
	  "Nothing; send the message and let delivery decide. To refuse VRFY outright, use "
	  "milter-cmdgate's policy or Postfix's disable_vrfy_command." },
	{ "354", "Start mail input",
	  "The server waits for the message: header and body, ended by a line holding a single dot.",
	  "After DATA, once at least one recipient was accepted.",
	  "Nothing; the client sends the message now." },
	{ "421", "Service not available, closing transmission channel",
	  "The server stops this session and closes the connection; the cause is expected to pass.",
	  "At any point: overload, shutdown, too many errors, a timeout, or a policy decision. "
	  "milter-cmdgate sends 421 4.7.0 for action disconnect and when a session passes the probe "
	  "limit.",
	  "A well-behaved client queues the mail and tries again later. If your own clients get it, "
	  "look for the reason in the server's log (milter-cmdgate: rule=limit or action=disconnect)." },
	{ "450", "Requested mail action not taken: mailbox unavailable",
	  "The command failed for now, for a reason tied to the mailbox or to policy (mailbox busy, "
	  "greylisting, a temporary block).",
	  "After RCPT or another command; milter-cmdgate sends 450 4.7.1 for action tempfail.",
	  "Try again later: a client's queue does this by itself. If it never clears, ask the "
	  "receiving site's postmaster." },
	{ "451", "Requested action aborted: local error in processing",
	  "The server met a problem of its own (a failed lookup, a resource shortage, a milter or "
	  "policy service it cannot reach) and could not finish the command.",
	  "At any command. With Postfix's milter_default_action = tempfail, a milter that is down "
	  "makes commands get 451 4.7.1.",
	  "Client: try again later. Server: read the MTA's log for the error, and check that "
	  "milter-cmdgate runs and its socket can be reached." },
	{ "452", "Requested action not taken: insufficient system storage",
	  "The server is short of room (disk, queue limits), or one message named more recipients "
	  "than it takes at once.",
	  "After MAIL, after RCPT (too many recipients), or after the final dot of DATA.",
	  "Client: try again later, or send the remaining recipients in another message. Server: "
	  "check the free space of the queue file system." },
	{ "455", "Server unable to accommodate parameters",
	  "The server cannot honour the parameters given with MAIL FROM or RCPT TO just now, but may "
	  "later.",
	  "After MAIL or RCPT carrying ESMTP parameters.",
	  "Try again later; if it keeps happening, send without that parameter." },
	{ "500", "Syntax error, command unrecognized",
	  "The server does not know the command, or the line was too long.",
	  "After a verb the server does not implement. Postfix answers 500 5.5.2 to unknown "
	  "commands, and from 3.10 on also in place of a milter's 5xx reply to one.",
	  "Client: send a command the server offers. In a log, a run of 500s usually marks a scanner "
	  "or a client speaking another protocol." },
	{ "501", "Syntax error in parameters or arguments",
	  "The verb is known but its argument is missing or malformed.",
	  "After a malformed address in MAIL or RCPT, HELO without a name, or VRFY or EXPN without "
	  "an argument.",
	  "Client: correct the argument. Many 501s in a row point to a broken client or a probe." },
	{ "502", "Command not implemented",
	  "The server knows the command but does not offer it, or has switched it off.",
	  "After a command the site turned off: VRFY with Postfix's disable_vrfy_command, TURN on "
	  "Sendmail, and milter-cmdgate's action reject (default reply 502 5.5.1).",
	  "Client: do without the command; asking again will not help. Server: the milter-cmdgate "
	  "audit line says which rule refused it; a rule with action allow lets a trusted client "
	  "through." },
	{ "503", "Bad sequence of commands",
	  "The command is valid, but not at this point of the session.",
	  "RCPT before MAIL, DATA before an accepted RCPT, a second MAIL, AUTH after a successful "
	  "AUTH.",
	  "Client: keep to the order SMTP requires. It often follows an earlier refusal: a refused "
	  "RCPT leaves DATA without recipients." },
	{ "504", "Command parameter not implemented",
	  "The command is supported, but not with this parameter.",
	  "After AUTH with a mechanism the server does not have, or an argument form it does not "
	  "support.",
	  "Client: pick another parameter, such as an AUTH mechanism listed in the EHLO reply." },
	{ "521", "Host does not accept mail",
	  "This host takes no mail for anybody, ever (RFC 7504).",
	  "As the greeting of a host that exists only to turn SMTP away.",
	  "Client: give up on this host; do not retry. Check the recipient domain's MX records." },
	{ "550", "Requested action not taken: mailbox unavailable",
	  "A final refusal: the mailbox does not exist, or policy forbids what was asked.",
	  "After RCPT for an unknown user, after MAIL or RCPT refused by policy (relay denied, "
	  "spam), or as a milter's refusal (Sendmail: 550 5.7.1 Command rejected).",
	  "Client: do not send the same again; fix the address or ask the site. The enhanced code "
	  "tells which case (5.1.1 unknown user, 5.7.1 policy)." },
	{ "551", "User not local; please try another path",
	  "The recipient is not here, and the server will not forward; the text may name the right "
	  "address.",
	  "After RCPT, on servers that refuse to forward for a user who moved.",
	  "Client: use the address the text gives, if any." },
	{ "552", "Requested mail action aborted: exceeded storage allocation",
	  "The message is too large, or the mailbox is over its quota.",
	  "After the final dot of DATA, after MAIL with a SIZE above the limit, or after RCPT for a "
	  "full mailbox.",
	  "Client: send a smaller message, or later if the mailbox was full. Server: check "
	  "message_size_limit and mailbox quotas." },
	{ "553", "Requested action not taken: mailbox name not allowed",
	  "The address is not acceptable: bad syntax, or not allowed here as sender or recipient.",
	  "After MAIL or RCPT with an address refused for its form or by policy.",
	  "Client: correct the address; the same one will be refused again." },
	{ "554", "Transaction failed",
	  "A final refusal with no more exact code; as a greeting it refuses the whole connection.",
	  "As the greeting of a server that will not talk to this client, after DATA for a refused "
	  "message, or after RCPT on a blocklist hit.",
	  "Client: do not retry unchanged; the text and the enhanced code say why. If your own "
	  "server gets it, check the blocklists." },
	{ "555", "MAIL FROM/RCPT TO parameters not recognized or not implemented",
	  "The server does not know an ESMTP parameter given with MAIL or RCPT.",
	  "After MAIL FROM or RCPT TO with a parameter the server did not announce in its EHLO reply.",
	  "Client: use only the extensions the EHLO reply lists." },
	{ "556", "Domain does not accept mail",
	  "The recipient's domain has said it receives no mail at all (a null MX, RFC 7504 and 7505).",
	  "After RCPT, from a server that found the recipient domain publishes a null MX.",
	  "Do not retry: that address can never get mail. Check it for typing errors." },

	/* Enhanced status codes: class.subject.detail; subject 5 protocol, 7 policy. */
	{ "4.7.0", "Other or undefined security status",
	  "A temporary refusal for a security or policy reason, with no more exact detail "
	  "(subject 7: security or policy).",
	  "With 421 from milter-cmdgate: action disconnect, and a session past the probe limit "
	  "(\"421 4.7.0 too many refused commands, closing connection\").",
	  "The client was cut off for this session and may come back later. Server: the audit line "
	  "with rule=limit or action=disconnect names the client; let trusted clients through with "
	  "a rule, or raise limits.probes." },
	{ "4.7.1", "Delivery not authorized, message refused",
	  "Refused for now by a policy decision; a later attempt may be accepted.",
	  "With 450 from milter-cmdgate's action tempfail; with 451 from Postfix when a milter is "
	  "down and milter_default_action = tempfail.",
	  "Client: try again later. Server: with 450, the audit line names the rule; with 451, check "
	  "that the milter runs." },
	{ "5.5.1", "Invalid command",
	  "The command is not accepted: unknown, not allowed, or not offered (subject 5: mail "
	  "protocol).",
	  "With 502 from milter-cmdgate's action reject (\"502 5.5.1 EXPN command not implemented\"), "
	  "and from Postfix for VRFY under disable_vrfy_command.",
	  "Client: stop sending that command. Server: the audit line (rule=, action=reject) shows "
	  "which part of the policy refused it; a rule with action allow exempts a client." },
	{ "5.5.2", "Syntax error",
	  "The command line could not be parsed, or its verb is not one the server knows.",
	  "With 500 from Postfix for a verb it does not know (\"500 5.5.2 Error: command not "
	  "recognized\"); Postfix 3.10 and later also send it in place of a milter's 5xx to an "
	  "unknown command.",
	  "Client: send a valid command. Server: under Postfix 3.10 and later, milter-cmdgate's "
	  "audit line still records the policy's own verdict." },
	{ "5.7.1", "Delivery not authorized, message refused",
	  "Refused for good by a security or policy decision.",
	  "With 550 or 554 for denied relaying or a blocked sender, and from Sendmail as \"550 5.7.1 "
	  "Command rejected\" when a milter refuses without a reply text Sendmail can use.",
	  "Client: do not retry unchanged; the text names the policy. Server: if Sendmail shows it "
	  "for a milter-cmdgate refusal, check the reply texts of the policy." },
	{ NULL, NULL, NULL, NULL, NULL },
};

static bool is_reply_code(const char *s)
{
	return strlen(s) == 3 && isdigit((unsigned char)s[0]) &&
	       isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
	       s[0] >= '2' && s[0] <= '5';
}

const char *explain_class(const char *code)
{
	if (!is_reply_code(code) && !reply_status_valid(code))
		return NULL;
	switch (code[0]) {
	case '2': return "2xx positive completion";
	case '3': return "3xx positive intermediate";
	case '4': return "4xx transient negative";
	default:  return "5xx permanent negative";
	}
}

enum explain_result explain_lookup(const char *code, const struct explanation **out)
{
	if (explain_class(code) == NULL)
		return EXPLAIN_MALFORMED;
	for (const struct explanation *e = explain_table; e->code != NULL; e++) {
		if (strcmp(e->code, code) == 0) {
			*out = e;
			return EXPLAIN_FOUND;
		}
	}
	return EXPLAIN_UNKNOWN;
}

/*
 * The next line of at most WIDTH characters of *TEXT, broken at a space (or
 * inside a word longer than WIDTH): sets *LINE to its start, advances *TEXT
 * past it and returns its length; 0 when nothing is left.
 */
static size_t next_line(const char **text, size_t width, const char **line)
{
	const char *s = *text;
	while (*s == ' ')
		s++;
	*line = s;
	size_t len = strlen(s);
	if (len <= width) {
		*text = s + len;
		return len;
	}
	size_t cut = width;
	while (cut > 0 && s[cut] != ' ')
		cut--;
	if (cut == 0)
		cut = width;
	*text = s + cut;
	while (cut > 0 && s[cut - 1] == ' ')
		cut--;
	return cut;
}

#define LINE_WIDTH 78

static void fill_rows(const struct explanation *e, const char *values[4])
{
	values[0] = explain_class(e->code);
	values[1] = e->meaning;
	values[2] = e->when;
	values[3] = e->todo;
}

static const char *const LABELS[4] = { "class", "meaning", "when seen", "what to do" };

void explain_print_one(FILE *out, const struct explanation *e)
{
	enum { INDENT = 14 }; /* "  what to do: " */
	const char *values[4];
	fill_rows(e, values);
	fprintf(out, "%s %s\n", e->code, e->name);
	for (int i = 0; i < 4; i++) {
		const char *text = values[i];
		char label[INDENT + 1];
		snprintf(label, sizeof label, "  %s:", LABELS[i]);
		const char *line;
		size_t n;
		bool first = true;
		while ((n = next_line(&text, LINE_WIDTH - INDENT, &line)) > 0) {
			fprintf(out, "%-*s%.*s\n", INDENT, first ? label : "", (int)n, line);
			first = false;
		}
	}
}

/* Prints one row of the comparison: the label, then both texts wrapped in columns. */
static void print_columns(FILE *out, const char *label, const char *a, const char *b)
{
	enum { LABEL = 12, COLUMN = 32, GAP = 2 };
	bool first = true;
	for (;;) {
		const char *ta, *tb;
		size_t na = next_line(&a, COLUMN, &ta), nb = next_line(&b, COLUMN, &tb);
		if (na == 0 && nb == 0)
			break;
		if (nb == 0)
			fprintf(out, "%-*s%.*s\n", LABEL, first ? label : "", (int)na, ta);
		else
			fprintf(out, "%-*s%-*.*s%*s%.*s\n", LABEL, first ? label : "",
				COLUMN, (int)na, ta, GAP, "", (int)nb, tb);
		first = false;
	}
}

void explain_print_pair(FILE *out, const struct explanation *a, const struct explanation *b)
{
	const char *va[4], *vb[4];
	fill_rows(a, va);
	fill_rows(b, vb);
	print_columns(out, "code", a->code, b->code);
	print_columns(out, "name", a->name, b->name);
	for (int i = 0; i < 4; i++)
		print_columns(out, LABELS[i], va[i], vb[i]);
}

#define MAX_CODES 16

int explain_main(int nargs, char *const args[], FILE *out, FILE *err)
{
	if (nargs < 1) {
		fprintf(err, "usage: milter-cmdgate explain CODE...\n"
			"  CODE: an SMTP reply code (550) or an enhanced status code (5.5.1)\n");
		return EX_USAGE;
	}
	if (nargs > MAX_CODES) {
		fprintf(err, "milter-cmdgate explain: at most %d codes at a time\n", MAX_CODES);
		return EX_USAGE;
	}
	const struct explanation *found[MAX_CODES];
	int bad = 0;
	for (int i = 0; i < nargs; i++) {
		const char *code = args[i];
		switch (explain_lookup(code, &found[i])) {
		case EXPLAIN_FOUND:
			break;
		case EXPLAIN_MALFORMED:
			fprintf(err, "milter-cmdgate explain: \"%s\" is neither an SMTP reply code "
				"(three digits from 200 to 599, like 550) nor an enhanced status code "
				"(like 5.5.1)\n", code);
			bad++;
			break;
		case EXPLAIN_UNKNOWN:
			if (strchr(code, '.') != NULL)
				fprintf(err, "milter-cmdgate explain: %s: not an enhanced status code "
					"milter-cmdgate knows (its class: %s; RFC 3463 lists them all)\n",
					code, explain_class(code));
			else
				fprintf(err, "milter-cmdgate explain: %s: not a reply code of RFC 5321 "
					"or RFC 7504 (its class would be %s)\n", code, explain_class(code));
			bad++;
			break;
		}
	}
	if (bad > 0)
		return EX_USAGE;
	if (nargs == 2) {
		explain_print_pair(out, found[0], found[1]);
		return EX_OK;
	}
	for (int i = 0; i < nargs; i++) {
		if (i > 0)
			fputc('\n', out);
		explain_print_one(out, found[i]);
	}
	return EX_OK;
}
