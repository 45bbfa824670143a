"""milter-cmdgate behind a real Postfix: SMTP replies and syslog audit lines.

Each test is one SMTP session (or a reload followed by one) against a
private Postfix instance whose smtpd_milters points at the milter under
test; replies are compared exactly, and so are the audit lines the milter
writes to syslog (every key and value, in order; only the value of
`session` is free, but it must be the same on all lines of one session and
new for every session).

The Postfix under test is the host's (Debian 12: 3.7), or the one in the
Debian root named by CMDGATE_POSTFIX_ROOT (Debian 13: 3.10, run chrooted;
see trixie-root.sh).  The same cases run against both; PostfixFacts says
where the expected replies and audit lines differ, and why.

Run through milter-door.test (automake) or `python3 -m unittest -v
test_milter_door` as root from this directory; see README.md.
"""

import os
import re
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

POLICY = """\
mode = "enforce";
syslog_facility = "mail";
banner = "$j ESMTP $v";
reply = { code = 502; status = "5.5.1"; text = "$verb command not implemented"; };
commands = { VRFY = { action = "reject"; }; EXPN = { action = "reject"; }; TURN = { action = "reject"; }; };
rules = (
  { clients = [ "127.0.0.2" ]; action = "allow"; },
  { clients = [ "127.0.0.3" ]; commands = [ "EXPN" ]; action = "log"; },
  { clients = [ "127.0.0.4" ]; commands = [ "EXPN" ]; action = "tempfail"; },
  { clients = [ "127.0.0.5" ]; commands = [ "EXPN" ]; action = "disconnect"; }
);
limits = { probes = 3; action = "disconnect"; };
"""

AUDIT_POLICY = POLICY.replace('mode = "enforce";', 'mode = "audit";')

BROKEN_RULES = 'rules = ( { clients = [ "10.0.0.0/33" ]; action = "allow"; } );'
BROKEN_POLICY = re.sub(r"(?ms)^rules = \(.*?^\);\n", BROKEN_RULES + "\n", POLICY)
BROKEN_LINE = BROKEN_POLICY.splitlines().index(BROKEN_RULES) + 1

assert AUDIT_POLICY != POLICY and BROKEN_RULES in BROKEN_POLICY

# Postfix's own answer to a command it does not know
NOT_RECOGNIZED = "500 5.5.2 Error: command not recognized"
LIMIT_REPLY = "421 4.7.0 too many refused commands, closing connection"
# Debian's Postfix packages are built with SASL: AUTH is Postfix's own command
AUTH_NOT_ENABLED = "503 5.5.1 Error: authentication not enabled"
BAD_UTF8 = "500 5.5.2 Error: bad UTF-8 syntax"
# Postfix >= 3.9 answers HELP itself (this list is Debian 13's build)
HELP_REPLY = ("214 2.0.0 Commands: AUTH BDAT DATA EHLO ETRN HELO HELP MAIL NOOP QUIT RCPT "
              "RSET STARTTLS VRFY XCLIENT XFORWARD")
MILTER_DOWN_451 = "451 4.7.1 Service unavailable - try again later"
MILTER_DOWN_421 = "421 %s Service unavailable - try again later" % h.MTA_HOSTNAME

# Where the Postfix under test lives: None for the host's, else a Debian root
POSTFIX_ROOT = os.environ.get("CMDGATE_POSTFIX_ROOT") or None

SESSION = object()  # stands for "the session id", whatever its value

ENV = None


class PostfixFacts:
    """What the Postfix under test does differently (MTA-FACTS §1, §9)."""

    def __init__(self, version):
        self.version = version
        number = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
        # xxfi_unknown gets the whole line ("EXPN staff-list"), not the verb
        self.whole_line = number >= (3, 10)
        # a milter's 5xx reply to an unknown command becomes Postfix's own 500
        self.replaces_5xx = number >= (3, 10)
        # HELP is a real command: Postfix answers it, the milter never sees it
        self.knows_help = number >= (3, 9)
        # milter_default_action defaults to shutdown instead of tempfail
        self.shutdown_default = number >= (3, 10, 8)


class Environment:
    """The milter (with POLICY, or the policy text given) and a private Postfix that calls it."""

    def __init__(self, policy=None):
        self.policy = POLICY if policy is None else policy
        self.log = None
        self.workdir = None
        self.policy_path = None
        self.milter = None
        self.postfix = None
        self.sessions = set()

    def start(self):
        try:
            self.log = h.MailLog()
            h.check_syslog(self.log)
            self.workdir = tempfile.mkdtemp(prefix="cmdgate-it-")
            os.chmod(self.workdir, 0o755)
            h.mark_owned(self.workdir)
            self.policy_path = os.path.join(self.workdir, "cmdgate.conf")
            self.write_policy(self.policy)
            self.milter = h.MilterProcess(self.policy_path, workdir=self.workdir).start()
            self.postfix = h.PostfixInstance(milter_port=self.milter.port,
                                             milter_default_action="tempfail",
                                             root=POSTFIX_ROOT).start()
            self.facts = PostfixFacts(self.postfix.mail_version())
        except BaseException:
            self.stop()
            raise
        return self

    def write_policy(self, text):
        tmp = self.policy_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.policy_path)

    def stop(self):
        try:
            if self.postfix is not None:
                self.postfix.stop()
        finally:
            try:
                if self.milter is not None:
                    self.milter.stop()
            finally:
                if self.workdir is not None:
                    shutil.rmtree(self.workdir, ignore_errors=True)
                    self.workdir = None


h.share_per_module(globals(), "ENV", lambda: Environment().start())


# ---------------------------------------------------------------------------
# Expected audit lines


def connect_line(client, name, banner):
    return [("event", "connect"), ("door", "milter"), ("session", SESSION),
            ("client", client), ("name", name), ("banner", banner), ("class", "2xx")]


def command_line(verb, client, rule, action, reply, cls, extra=(), arg=None):
    """ARG: the command's argument; expected only where the MTA passes it."""
    return ([("event", "command"), ("door", "milter"), ("session", SESSION), ("verb", verb)]
            + ([("arg", arg)] if arg is not None and ENV.facts.whole_line else [])
            + [("client", client), ("rule", rule), ("action", action),
               ("reply", reply), ("class", cls)]
            + ([("mta_reply", NOT_RECOGNIZED)]
               if ENV.facts.replaces_5xx and reply.startswith("5") else [])
            + list(extra))


def close_line(client, helo, commands, refused, c2xx=1, c3xx=0, c4xx=0, c5xx=0, extra=()):
    """HELO: the EHLO/HELO argument (the milter adds helo= once it saw one), or None."""
    return ([("event", "close"), ("door", "milter"), ("session", SESSION), ("client", client)]
            + ([("helo", helo)] if helo is not None else [])
            + [("commands", str(commands)), ("refused", str(refused)),
               ("2xx", str(c2xx)), ("3xx", str(c3xx)), ("4xx", str(c4xx)), ("5xx", str(c5xx))]
            + list(extra))


def unresolved(client):
    """name= of a client whose name Postfix did not look up: the bracketed address."""
    return "[%s]" % client


def rejected(verb, client, arg=None):
    return command_line(verb, client, "command", "reject",
                        "502 5.5.1 %s command not implemented" % verb, "5xx", arg=arg)


def refusal(verb):
    """What the client reads when the policy rejects VERB (default reply)."""
    if ENV.facts.replaces_5xx:
        return NOT_RECOGNIZED
    return "502 5.5.1 %s command not implemented" % verb


class MilterDoorTest(h.SessionTestCase):
    def environment(self):
        return ENV and (ENV.log, ENV.milter)

    # -- helpers -------------------------------------------------------------

    def open(self, source=None, named=False):
        c = h.smtp_client(ENV.postfix, source=source, named=named)
        self.clients.append(c)
        try:
            c.connect()
        except h.HarnessError as e:
            self.fail("connect from %s: %s%s" % (source or "127.0.0.1", e, self.diag(c)))
        return c

    def ehlo(self, client, name):
        try:
            got = client.command("EHLO " + name)
        except h.HarnessError as e:
            self.fail("EHLO: %s%s" % (e, self.diag(client)))
        self.assertEqual(client.last_reply[0], "250-" + h.MTA_HOSTNAME, self.diag(client))
        self.assertTrue(got.startswith("250 "), self.diag(client))

    def expect_greeting(self, client):
        greeting = client.last_reply[-1]
        self.assertEqual(greeting, "220 %s ESMTP Postfix %s" % (h.MTA_HOSTNAME, ENV.facts.version),
                         self.diag(client))
        return greeting

    def send_mail(self, client):
        self.expect(client, "MAIL FROM:<prober@example.org>", "250 2.1.0 Ok")
        self.expect(client, "RCPT TO:<postmaster@%s>" % h.MTA_HOSTNAME, "250 2.1.5 Ok")
        self.expect(client, "DATA", "354 End data with <CR><LF>.<CR><LF>")
        try:
            got = client.send_message("From: <prober@example.org>\n"
                                      "To: <postmaster@%s>\n"
                                      "Subject: cmdgate integration test\n\n"
                                      "mail still flows\n" % h.MTA_HOSTNAME)
        except h.HarnessError as e:
            self.fail("end of DATA: %s%s" % (e, self.diag(client)))
        self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as [0-9A-Za-z]+$", self.diag(client))

    def quit(self, client):
        self.expect(client, "QUIT", "221 2.0.0 Bye")

    def is_milter_audit(self, record):
        return (record.pid == ENV.milter.pid and record.ident == h.MILTER_IDENT
                and h.is_audit_message(record.msg))

    def parse(self, record):
        try:
            return h.parse_audit(record.msg)
        except h.AuditParseError as e:
            self.fail("malformed audit line %r: %s%s" % (record.raw, e, self.diag()))

    def session_lines(self, client=None, timeout=5.0):
        """Audit lines of the first milter session that began since setUp.

        Waits for its close line, so that no later test sees its lines.
        """
        first = ENV.log.wait_for(
            lambda r: self.is_milter_audit(r) and self.parse(r).get("event") == "connect",
            since=self.mark, timeout=timeout)
        if first is None:
            self.fail("no event=connect audit line of milter pid %d within %.0f s%s"
                      % (ENV.milter.pid, timeout, self.diag(client)))
        session = self.parse(first).get("session")
        self.assertRegex(session or "", r"^[0-9a-f]+$",
                         "session id must be hex: %r%s" % (first.raw, self.diag(client)))
        close = ENV.log.wait_for(
            lambda r: self.is_milter_audit(r) and self.parse(r).get("session") == session
            and self.parse(r).get("event") == "close",
            since=self.mark, timeout=timeout)
        if close is None:
            self.fail("no event=close audit line for session %s within %.0f s%s"
                      % (session, timeout, self.diag(client)))
        self.assertNotIn(session, ENV.sessions,
                         "session id %s was used by an earlier session%s"
                         % (session, self.diag(client)))
        ENV.sessions.add(session)
        return [self.parse(r) for r in ENV.log.select(self.is_milter_audit, self.mark)
                if self.parse(r).get("session") == session]

    def assertAudit(self, lines, expected, client=None, prefix="NOQUEUE"):
        """LINES (AuditLine list) equal EXPECTED (list of item lists), exactly."""
        def norm(items):
            return [(k, "<session>" if v is SESSION or k == "session" else v) for k, v in items]
        actual = [("%s:" % l.prefix, norm(l.items)) for l in lines]
        wanted = [("%s:" % prefix, norm(items)) for items in expected]
        self.assertEqual(actual, wanted, "audit lines differ%s" % self.diag(client))

    def reload(self, text, expect_ok=True, timeout=5.0):
        """Write TEXT as the policy file, send SIGUSR1, wait for the verdict in the log."""
        ENV.write_policy(text)
        mark = ENV.log.mark()
        ENV.milter.reload()
        pid = ENV.milter.pid
        if expect_ok:
            rec = ENV.log.wait_for(
                lambda r: r.pid == pid and "configuration reloaded from" in r.msg,
                since=mark, timeout=timeout)
            if rec is None:
                self.fail("no 'configuration reloaded from' line after SIGUSR1%s" % self.diag())
            self.assertIn("configuration reloaded from %s" % ENV.policy_path, rec.msg,
                          self.diag())
            return [rec]
        rec = ENV.log.wait_for(
            lambda r: r.pid == pid and "keeping previous configuration" in r.msg,
            since=mark, timeout=timeout)
        if rec is None:
            self.fail("no 'keeping previous configuration' line after SIGUSR1 with a "
                      "broken file%s" % self.diag())
        return [r for r in ENV.log.select(lambda r: r.pid == pid, mark)]

    # -- the cases -----------------------------------------------------------

    def test_01_stranger_probes_then_limit(self):
        """127.0.0.1: refusals, allow by default, mail still flows, probe limit."""
        named = ENV.postfix.named_port is not None
        c = self.open(named=named)
        greeting = self.expect_greeting(c)
        self.ehlo(c, "client.example")
        self.expect(c, "EXPN", refusal("EXPN"))
        self.expect(c, "expn x", refusal("EXPN"))
        self.expect(c, "XFOO", NOT_RECOGNIZED)
        self.expect(c, "TURN", refusal("TURN"))
        self.send_mail(c)
        self.expect(c, "EXPN", LIMIT_REPLY)
        self.assertTrue(c.wait_closed(5), "Postfix did not close after 421%s" % self.diag(c))
        lines = self.session_lines(c)
        self.assertAudit(lines, [
            connect_line("127.0.0.1", "localhost" if named else unresolved("127.0.0.1"), greeting),
            rejected("EXPN", "127.0.0.1"),
            rejected("EXPN", "127.0.0.1", arg="x"),
            command_line("XFOO", "127.0.0.1", "default", "allow", "none", "none"),
            rejected("TURN", "127.0.0.1"),
            command_line("EXPN", "127.0.0.1", "limit", "disconnect", LIMIT_REPLY, "4xx"),
            close_line("127.0.0.1", "client.example", commands=5, refused=4, c4xx=1, c5xx=3),
        ], c)

    def test_02_expn_before_ehlo(self):
        """EXPN as the first command, without EHLO, is refused too."""
        c = self.open()
        greeting = self.expect_greeting(c)
        self.expect(c, "EXPN", refusal("EXPN"))
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
            rejected("EXPN", "127.0.0.1"),
            close_line("127.0.0.1", None, commands=1, refused=1, c5xx=1),
        ], c)

    def test_03_trusted_client_allowed(self):
        """127.0.0.2 matches rule 1 (allow): Postfix answers EXPN itself."""
        c = self.open(source="127.0.0.2")
        greeting = self.expect_greeting(c)
        self.ehlo(c, "trusted.example")
        self.expect(c, "EXPN", NOT_RECOGNIZED)
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.2", unresolved("127.0.0.2"), greeting),
            command_line("EXPN", "127.0.0.2", "1", "allow", "none", "none"),
            close_line("127.0.0.2", "trusted.example", commands=1, refused=0),
        ], c)

    def test_04_rule_limited_to_expn(self):
        """127.0.0.3: rule 2 logs EXPN only; TURN falls to the command action."""
        c = self.open(source="127.0.0.3")
        greeting = self.expect_greeting(c)
        self.ehlo(c, "logged.example")
        self.expect(c, "EXPN", NOT_RECOGNIZED)
        self.expect(c, "TURN", refusal("TURN"))
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.3", unresolved("127.0.0.3"), greeting),
            command_line("EXPN", "127.0.0.3", "2", "log", "none", "none"),
            rejected("TURN", "127.0.0.3"),
            close_line("127.0.0.3", "logged.example", commands=2, refused=1, c5xx=1),
        ], c)

    def test_05_ipv6_stranger(self):
        """A stranger on ::1 is refused like one on 127.0.0.1."""
        if not ENV.postfix.ipv6:
            self.skipTest("no IPv6 loopback on this machine")
        c = self.open(source="::1")
        greeting = self.expect_greeting(c)
        self.ehlo(c, "v6.example")
        self.expect(c, "EXPN", refusal("EXPN"))
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("::1", unresolved("::1"), greeting),
            rejected("EXPN", "::1"),
            close_line("::1", "v6.example", commands=1, refused=1, c5xx=1),
        ], c)

    def test_06_reload_to_audit_mode(self):
        """SIGUSR1 with mode = "audit": nothing refused, verdict logged with mode=audit."""
        self.reload(AUDIT_POLICY)
        try:
            self.mark = ENV.log.mark()
            c = self.open()
            greeting = self.expect_greeting(c)
            self.ehlo(c, "audit.example")
            self.expect(c, "EXPN", NOT_RECOGNIZED)
            self.quit(c)
            self.assertAudit(self.session_lines(c), [
                connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
                rejected("EXPN", "127.0.0.1") + [("mode", "audit")],
                close_line("127.0.0.1", "audit.example", commands=1, refused=1, c5xx=1,
                           extra=[("mode", "audit")]),
            ], c)
        finally:
            self.reload(POLICY)
        # enforced again from the next connection on
        self.mark = ENV.log.mark()
        c = self.open()
        self.expect(c, "EXPN", refusal("EXPN"))
        self.quit(c)
        self.session_lines(c)

    def test_07_broken_reload_keeps_policy(self):
        """SIGUSR1 with a broken file: FILE:LINE: message, old policy still enforced."""
        try:
            records = self.reload(BROKEN_POLICY, expect_ok=False)
            where = "%s:%d:" % (ENV.policy_path, BROKEN_LINE)
            self.assertTrue(any(where in r.msg for r in records),
                            "no line with %r among %r%s" % (where, [r.msg for r in records],
                                                            self.diag()))
            self.assertFalse(any("configuration reloaded" in r.msg for r in records),
                             self.diag())
            self.mark = ENV.log.mark()
            c = self.open()
            greeting = self.expect_greeting(c)
            self.ehlo(c, "still.example")
            self.expect(c, "EXPN", refusal("EXPN"))
            self.quit(c)
            self.assertAudit(self.session_lines(c), [
                connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
                rejected("EXPN", "127.0.0.1"),
                close_line("127.0.0.1", "still.example", commands=1, refused=1, c5xx=1),
            ], c)
        finally:
            self.reload(POLICY)

    def test_08_values_quoted_and_escaped(self):
        """Client-chosen bytes (EHLO name, unknown verb) reach the log C-escaped."""
        helo = b'odd"name\\x=y\xc3\xa9\x01z'
        verb = b"X\xc3\xa9Y"
        c = self.open()
        greeting = self.expect_greeting(c)
        try:
            got = c.command(b"EHLO " + helo)
        except h.HarnessError as e:
            self.fail("EHLO: %s%s" % (e, self.diag(c)))
        self.assertTrue(got.startswith("250 "), self.diag(c))
        self.expect(c, verb, NOT_RECOGNIZED)
        self.quit(c)
        lines = self.session_lines(c)
        helo_text = helo.decode("utf-8", "surrogateescape")
        self.assertAudit(lines, [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
            command_line(verb.decode("utf-8"), "127.0.0.1", "default", "allow", "none", "none"),
            close_line("127.0.0.1", helo_text, commands=1, refused=0),
        ], c)
        # the exact escaped form on the wire of syslog
        self.assertIn(r'helo="odd\"name\\x=y\xc3\xa9\x01z"', lines[-1].raw, self.diag(c))
        self.assertIn(r'verb="X\xc3\xa9Y"', lines[1].raw, self.diag(c))

    def test_09_expn_with_argument(self):
        """EXPN staff-list: 3.10 passes the argument and hides the 502 behind its 500."""
        helo = "arg-%d.example" % os.getpid()
        c = self.open()
        greeting = self.expect_greeting(c)
        self.ehlo(c, helo)
        self.expect(c, "EXPN staff-list", refusal("EXPN"))
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
            rejected("EXPN", "127.0.0.1", arg="staff-list"),
            close_line("127.0.0.1", helo, commands=1, refused=1, c5xx=1),
        ], c)
        # Postfix's own record of the verdict: 3.7 logs it, 3.10 does not
        # (the milter's audit line is then the only one)
        logged = ENV.log.select(lambda r: r.ident is not None
                                and r.ident.startswith(h.POSTFIX_SYSLOG_NAME + "/")
                                and "milter-reject:" in r.msg
                                and ("helo=<%s>" % helo) in r.msg, self.mark)
        if ENV.facts.replaces_5xx:
            self.assertEqual(logged, [], self.diag(c))
        else:
            self.assertEqual([r.msg for r in logged], [
                "NOQUEUE: milter-reject: UNKNOWN from unknown[127.0.0.1]: 502 5.5.1 EXPN "
                "command not implemented; proto=ESMTP helo=<%s>" % helo], self.diag(c))

    def test_10_tempfail_passes_through(self):
        """127.0.0.4: rule 3 tempfails EXPN; every Postfix sends the milter's 450."""
        c = self.open(source="127.0.0.4")
        greeting = self.expect_greeting(c)
        self.ehlo(c, "tempfail.example")
        self.expect(c, "EXPN staff-list", "450 4.7.1 EXPN command temporarily refused")
        self.expect(c, "TURN", refusal("TURN"))
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.4", unresolved("127.0.0.4"), greeting),
            command_line("EXPN", "127.0.0.4", "3", "tempfail",
                         "450 4.7.1 EXPN command temporarily refused", "4xx", arg="staff-list"),
            rejected("TURN", "127.0.0.4"),
            close_line("127.0.0.4", "tempfail.example", commands=2, refused=2, c4xx=1, c5xx=1),
        ], c)

    def test_11_disconnect_passes_through(self):
        """127.0.0.5: rule 4 disconnects on EXPN; every Postfix sends 421 and closes."""
        c = self.open(source="127.0.0.5")
        greeting = self.expect_greeting(c)
        self.ehlo(c, "disconnect.example")
        self.expect(c, "EXPN staff-list", "421 4.7.0 EXPN command refused, closing connection")
        self.assertTrue(c.wait_closed(5), "Postfix did not close after 421%s" % self.diag(c))
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.5", unresolved("127.0.0.5"), greeting),
            command_line("EXPN", "127.0.0.5", "4", "disconnect",
                         "421 4.7.0 EXPN command refused, closing connection", "4xx",
                         arg="staff-list"),
            close_line("127.0.0.5", "disconnect.example", commands=1, refused=1, c4xx=1),
        ], c)

    def test_12_help(self):
        """HELP reaches the milter on 3.7 only; 3.9+ answers it itself."""
        c = self.open()
        greeting = self.expect_greeting(c)
        if ENV.facts.knows_help:
            self.expect(c, "HELP", HELP_REPLY)
            seen = []
        else:
            self.expect(c, "HELP", NOT_RECOGNIZED)
            seen = [command_line("HELP", "127.0.0.1", "default", "allow", "none", "none")]
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting)] + seen + [
            close_line("127.0.0.1", None, commands=len(seen), refused=0),
        ], c)

    def hostile(self, arg):
        """One session: EXPN ARG, then NOOP. Returns client, greeting, audit lines."""
        c = self.open()
        greeting = self.expect_greeting(c)
        self.expect(c, b"EXPN " + arg, refusal("EXPN"))
        self.expect(c, "NOOP", "250 2.0.0 Ok")
        self.quit(c)
        return c, greeting, self.session_lines(c)

    def test_13_hostile_bytes_in_argument(self):
        """NUL, bare CR, ESC, printf formats, RTL override: reply intact, arg escaped."""
        cases = [
            # what the client sends, the arg the milter logs (3.10), its form on the wire
            (b"a\x00b", "a", " arg=a "),  # the milter's C string ends at the NUL
            (b"a\rb", "a\rb", r' arg="a\rb" '),
            (b"a\x1b[31mred", "a\x1b[31mred", r' arg="a\x1b[31mred" '),
            (b"%n%s%x", "%n%s%x", " arg=%n%s%x "),
            ("\u202egnp.exe".encode(), "\u202egnp.exe", r' arg="\xe2\x80\xaegnp.exe" '),
        ]
        for sent, arg, raw in cases:
            with self.subTest(arg=sent):
                self.mark = ENV.log.mark()
                c, greeting, lines = self.hostile(sent)
                self.assertAudit(lines, [
                    connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
                    rejected("EXPN", "127.0.0.1", arg=arg),
                    close_line("127.0.0.1", None, commands=1, refused=1, c5xx=1),
                ], c)
                if ENV.facts.whole_line:
                    self.assertIn(raw, lines[1].raw, self.diag(c))

    def test_14_invalid_utf8_stops_at_postfix(self):
        """Invalid UTF-8 in a command: Postfix refuses it before any milter sees it."""
        c = self.open()
        greeting = self.expect_greeting(c)
        self.expect(c, b"EXPN \xff\xfe\xc3(", BAD_UTF8)
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
            close_line("127.0.0.1", None, commands=0, refused=0),
        ], c)

    def test_15_long_argument_cut(self):
        """EXPN with 5000 bytes: reply intact, arg cut at 256 bytes and marked."""
        c = self.open()
        greeting = self.expect_greeting(c)
        self.expect(c, b"EXPN " + b"A" * 4995, refusal("EXPN"))
        cut = "A" * 256 + "..."
        if ENV.facts.whole_line:
            # Measured on 3.10.13: smtpd takes the first 2048 bytes as one
            # command and the rest as another (its verb is all A), answers
            # that too, then stops reading and closes the connection.
            try:
                second = c.read_reply()
            except h.HarnessError as e:
                self.fail("second reply: %s%s" % (e, self.diag(c)))
            self.assertEqual(second, NOT_RECOGNIZED, self.diag(c))
            self.assertTrue(c.wait_closed(5), "Postfix did not close%s" % self.diag(c))
            rest = [command_line(cut, "127.0.0.1", "default", "allow", "none", "none")]
        else:
            # 3.7 skips the rest of the line
            self.expect(c, "NOOP", "250 2.0.0 Ok")
            self.quit(c)
            rest = []
        lines = self.session_lines(c)
        self.assertAudit(lines, [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
            rejected("EXPN", "127.0.0.1", arg=cut)] + rest + [
            close_line("127.0.0.1", None, commands=1 + len(rest), refused=1, c5xx=1),
        ], c)
        for line in lines:
            self.assertLess(len(line.raw), 1024, self.diag(c))

    def test_16_argument_of_other_verbs_never_logged(self):
        """AUTH PLAIN <credentials> and XFOO <secret>: no argument in any milter line."""
        c = self.open()
        greeting = self.expect_greeting(c)
        self.ehlo(c, "secret.example")
        self.expect(c, "AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", AUTH_NOT_ENABLED)
        self.expect(c, "XFOO s3cr3t-value", NOT_RECOGNIZED)
        self.quit(c)
        self.assertAudit(self.session_lines(c), [
            connect_line("127.0.0.1", unresolved("127.0.0.1"), greeting),
            command_line("XFOO", "127.0.0.1", "default", "allow", "none", "none"),
            close_line("127.0.0.1", "secret.example", commands=1, refused=0),
        ], c)
        leaked = ENV.log.select(lambda r: r.pid == ENV.milter.pid
                                and ("s3cr3t" in r.msg or "dGVzdAB0" in r.msg), self.mark)
        self.assertEqual(leaked, [], self.diag(c))

    def test_17_milter_down(self):
        """A stopped milter under each milter_default_action: what a client sees."""
        workdir = tempfile.mkdtemp(prefix="cmdgate-it-")
        milter = postfix = None
        try:
            os.chmod(workdir, 0o755)
            h.mark_owned(workdir)
            policy = os.path.join(workdir, "cmdgate.conf")
            with open(policy, "w") as f:
                f.write(POLICY)
            milter = h.MilterProcess(policy, workdir=workdir).start()
            # main listener: Postfix's own default; one more per setting
            postfix = h.PostfixInstance(
                milter_port=milter.port, milter_default_action=None, root=POSTFIX_ROOT,
                ipv6=False, listeners={a: {"milter_default_action": a}
                                       for a in ("tempfail", "accept")}).start()
            milter.stop()
            tempfail = [("EXPN staff-list", MILTER_DOWN_451), ("TURN", MILTER_DOWN_451),
                        ("MAIL FROM:<prober@example.org>", MILTER_DOWN_451)]
            accept = [("EXPN staff-list", NOT_RECOGNIZED), ("TURN", NOT_RECOGNIZED),
                      ("MAIL FROM:<prober@example.org>", "250 2.1.0 Ok")]
            for action, port, commands in (
                    ("default", postfix.port, None if ENV.facts.shutdown_default else tempfail),
                    ("tempfail", postfix.listener_ports["tempfail"], tempfail),
                    ("accept", postfix.listener_ports["accept"], accept)):
                with self.subTest(milter_default_action=action):
                    c = h.SMTPClient("127.0.0.1", port)
                    self.clients.append(c)
                    try:
                        greeting = c.connect()
                    except h.HarnessError as e:
                        self.fail("connect: %s%s" % (e, self.diag(c)))
                    if commands is None:  # shutdown
                        self.assertEqual(greeting, MILTER_DOWN_421, self.diag(c))
                        self.assertTrue(c.wait_closed(5), "not closed%s" % self.diag(c))
                        continue
                    self.expect_greeting(c)
                    self.ehlo(c, "down.example")
                    for command, reply in commands:
                        self.expect(c, command, reply)
                    self.quit(c)
        finally:
            for obj in (postfix, milter):
                if obj is not None:
                    obj.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def test_99_milter_survived(self):
        """After all sessions and reloads the milter is still running."""
        self.assertTrue(ENV.milter.running(), self.diag())


if __name__ == "__main__":
    unittest.main(verbosity=2)
