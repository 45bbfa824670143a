"""milter-cmdgate's policy-delegation door behind a real Postfix.

Postfix never shows VRFY to a milter; it asks the policy server named by
check_policy_service (MTA-FACTS §5).  One milter-cmdgate process serves
both doors here: smtpd_milters (EXPN, TURN) and check_policy_service in
smtpd_recipient_restrictions and smtpd_etrn_restrictions (VRFY, ETRN).
Replies and the audit lines the daemon writes to syslog are compared
exactly.  Each test uses its own client address, because refusals are
counted per address across sessions (limits.window).

Postfix is the host's (Debian 12: 3.7), or the one in the Debian root named
by CMDGATE_POSTFIX_ROOT (Debian 13: 3.10, run chrooted; see
policy-door-trixie.test): the same cases, with PostfixFacts for the replies
that differ.
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_milter_door import POSTFIX_ROOT, PostfixFacts  # noqa: E402

POLICY = """\
policy_socket = "inet:%(policy_port)d@127.0.0.1";
commands = {
  VRFY = { action = "reject"; reply = { text = "VRFY disabled by policy"; }; };
  EXPN = { action = "reject"; };
  ETRN = { action = "reject"; };
};
rules = (
  { clients = [ "127.0.0.2" ]; action = "allow"; },
  { users = [ "monitor" ]; commands = [ "VRFY" ]; action = "allow"; }
);
limits = { probes = 3; window = 600; action = "disconnect"; };
"""

LIMIT_REPLY = "421 4.7.0 too many refused commands, closing connection"
VRFY_REFUSED = "502 5.5.1 VRFY disabled by policy"

ENV = None


class Environment:
    """One daemon with both doors, a Postfix using both, a Postfix whose policy server is down."""

    def __init__(self):
        self.workdir = self.milter = self.postfix = self.orphan = None

    def start(self):
        try:
            self.log = h.MailLog()
            h.check_syslog(self.log)
            self.workdir = tempfile.mkdtemp(prefix="cmdgate-pd-")
            os.chmod(self.workdir, 0o755)
            h.mark_owned(self.workdir)
            self.policy_port = h.pick_port()
            path = os.path.join(self.workdir, "cmdgate.conf")
            with open(path, "w") as f:
                f.write(POLICY % {"policy_port": self.policy_port})
            self.milter = h.MilterProcess(path, workdir=self.workdir).start()
            if not h.wait_until(lambda: h.port_listening("127.0.0.1", self.policy_port), 5):
                raise h.HarnessError("the policy door does not listen:\n" + self.milter.output())
            service = "check_policy_service inet:127.0.0.1:%d" % self.policy_port
            self.postfix = h.PostfixInstance(milter_port=self.milter.port, root=POSTFIX_ROOT, extra_main={
                "smtpd_recipient_restrictions":
                    service + ", permit_mynetworks, reject_unauth_destination",
                "smtpd_etrn_restrictions": service + ", permit_mynetworks, reject",
                "disable_vrfy_command": "no",
                "fast_flush_domains": "",
                "smtputf8_enable": "no",  # so invalid UTF-8 reaches the door (test_08)
            }).start()
            self.facts = PostfixFacts(self.postfix.mail_version())
            # The same restrictions with nobody listening on the policy port.
            dead = "check_policy_service inet:127.0.0.1:%d" % h.pick_port()
            self.orphan = h.PostfixInstance(milter_port=None, root=POSTFIX_ROOT, extra_main={
                "smtpd_recipient_restrictions":
                    dead + ", permit_mynetworks, reject_unauth_destination",
            }).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for part in (self.orphan, self.postfix, self.milter):
            try:
                if part is not None:
                    part.stop()
            except Exception:
                pass
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


h.share_per_module(globals(), "ENV", lambda: Environment().start())


def policy_line(verb, arg, client, rule, action, reply, cls, user=None):
    return ([("event", "command"), ("door", "policy"), ("verb", verb), ("arg", arg),
             ("client", client)] + ([("user", user)] if user else [])
            + [("rule", rule), ("action", action), ("reply", reply), ("class", cls)])


class PolicyDoorTest(h.SessionTestCase):
    def environment(self):
        return ENV and (ENV.log, ENV.milter)

    def open(self, source, postfix=None):
        c = h.smtp_client(postfix or ENV.postfix, source=source)
        self.clients.append(c)
        c.connect()
        c.command("EHLO probe.example")
        return c

    def policy_lines(self, count, client=None):
        """The next COUNT door=policy audit lines of the daemon since setUp."""
        def wanted(r):
            return (r.pid == ENV.milter.pid and h.is_audit_message(r.msg)
                    and h.parse_audit(r.msg).get("door") == "policy")
        if not h.wait_until(lambda: len(ENV.log.select(wanted, self.mark)) >= count, 5):
            self.fail("expected %d door=policy lines%s" % (count, self.diag(client)))
        lines = [h.parse_audit(r.msg) for r in ENV.log.select(wanted, self.mark)]
        self.assertEqual([l.prefix for l in lines], ["NOQUEUE"] * len(lines), self.diag(client))
        return [l.items for l in lines]

    def test_01_vrfy_refused_for_a_stranger(self):
        """VRFY from 127.0.0.11 gets 502 5.5.1 through Postfix's recipient restrictions."""
        c = self.open("127.0.0.11")
        self.expect(c, "VRFY root",
                    "502 5.5.1 <root>: Recipient address rejected: VRFY disabled by policy")
        self.assertEqual(self.policy_lines(1, c), [
            policy_line("VRFY", "root", "127.0.0.11", "command", "reject", VRFY_REFUSED, "5xx")])

    def test_02_vrfy_answered_for_a_trusted_client(self):
        """VRFY from 127.0.0.2 (rule 1, allow) gets Postfix's own 252."""
        c = self.open("127.0.0.2")
        self.expect(c, "VRFY root", "252 2.0.0 root")
        self.assertEqual(self.policy_lines(1, c), [
            policy_line("VRFY", "root", "127.0.0.2", "1", "allow", "none", "none")])

    def test_03_etrn(self):
        """ETRN from a stranger is refused; from a trusted client Postfix answers itself."""
        c = self.open("127.0.0.12")
        self.expect(c, "ETRN example.com",
                    "502 5.5.1 <example.com>: Etrn command rejected: ETRN command not implemented")
        t = self.open("127.0.0.2")
        self.expect(t, "ETRN example.com",
                    "459 <example.com>: service unavailable")  # no flush service here
        self.assertEqual(self.policy_lines(2, c), [
            policy_line("ETRN", "example.com", "127.0.0.12", "command", "reject",
                        "502 5.5.1 ETRN command not implemented", "5xx"),
            policy_line("ETRN", "example.com", "127.0.0.2", "1", "allow", "none", "none")])

    def test_04_mail_is_untouched(self):
        """MAIL, RCPT and DATA pass the door (DUNNO) and write no audit line."""
        c = self.open("127.0.0.13")
        self.expect(c, "MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
        self.expect(c, "RCPT TO:<postmaster@%s>" % h.MTA_HOSTNAME, "250 2.1.5 Ok")
        self.expect(c, "DATA", "354 End data with <CR><LF>.<CR><LF>")
        got = c.send_message("Subject: door test\n\nbody\n")
        self.assertRegex(got, r"^250 2\.0\.0 Ok: queued as \w+$", self.diag(c))
        self.expect(c, "QUIT", "221 2.0.0 Bye")
        self.assertEqual(ENV.log.select(
            lambda r: r.pid == ENV.milter.pid and "door=policy" in r.msg, self.mark), [])

    def test_05_probe_limit_is_shared_by_both_doors(self):
        """EXPN twice through the milter, VRFY through the policy door: the 4th probe gets 421."""
        # Postfix 3.10 answers a milter's 5xx to an unknown command with its own 500
        expn_refused = ("500 5.5.2 Error: command not recognized" if ENV.facts.replaces_5xx
                        else "502 5.5.1 EXPN command not implemented")
        c = self.open("127.0.0.14")
        self.expect(c, "EXPN staff", expn_refused)
        self.expect(c, "VRFY root",
                    "502 5.5.1 <root>: Recipient address rejected: VRFY disabled by policy")
        c.command("QUIT")
        d = self.open("127.0.0.14")  # a new session: the count is per address
        self.expect(d, "EXPN", expn_refused)
        self.expect(d, "VRFY root", "421 4.7.0 <root>: Recipient address rejected: "
                                    "too many refused commands, closing connection")
        self.assertTrue(d.wait_closed(5), "Postfix did not close after 421" + self.diag(d))
        self.assertEqual(self.policy_lines(2, d), [
            policy_line("VRFY", "root", "127.0.0.14", "command", "reject", VRFY_REFUSED, "5xx"),
            policy_line("VRFY", "root", "127.0.0.14", "limit", "disconnect", LIMIT_REPLY, "4xx")])

    def test_06_policy_server_down(self):
        """Nobody on the policy port: Postfix answers 451 4.3.5, the command is not let through."""
        c = self.open("127.0.0.15", postfix=ENV.orphan)
        self.expect(c, "VRFY root",
                    "451 4.3.5 <root>: Recipient address rejected: Server configuration problem")

    def test_08_hostile_arguments(self):
        """VRFY arguments with hostile bytes reach the door (Postfix itself stops
        ESC, bare CR and spaces with 501 5.1.3): the reply is Postfix's whole
        refusal line (SMTPUTF8 off: it writes each 8-bit byte as a space), and
        arg= shows the client's bytes escaped exactly."""
        cases = [  # client, argument as sent, address in the reply, arg= as written
            ("127.0.0.21", b"%n%s%x", "%n%s%x", "%n%s%x"),
            ("127.0.0.22", b"r\xe2\x80\xaeoot", "r   oot", h.audit_quoted(b"r\xe2\x80\xaeoot")),
            ("127.0.0.23", b"bad\xff\xfeutf", "bad  utf", h.audit_quoted(b"bad\xff\xfeutf")),
            ("127.0.0.24", b"L" * 600, "L" * 600, '"%s..."' % ("L" * 256)),
            ("127.0.0.25", b"a\x00b", "a", "a"),  # Postfix ends the line at the NUL
        ]
        for client, arg, shown, field in cases:
            self.mark = ENV.log.mark()
            c = self.open(client)
            self.expect(c, b"VRFY " + arg,
                        "502 5.5.1 <%s>: Recipient address rejected: VRFY disabled by policy" % shown)
            self.expect(c, "QUIT", "221 2.0.0 Bye")
            self.policy_lines(1, c)
            [rec] = ENV.log.select(lambda r: r.pid == ENV.milter.pid and "door=policy" in r.msg,
                                   self.mark)
            self.assertEqual(h.audit_raw_fields(rec.msg), {
                "event": "command", "door": "policy", "verb": "VRFY", "arg": field,
                "client": client, "rule": "command", "action": "reject",
                "reply": '"%s"' % VRFY_REFUSED, "class": "5xx"}, rec.msg + self.diag(c))

    def test_07_bad_requests_close_the_connection(self):
        """Garbage on the policy socket: a logged error and a closed connection, no verdict."""
        import socket
        for data, reason in [
                (b"protocol_state=VRFY\nrecipient=root\n\n", "no request= attribute"),
                (b"request=smtpd_access_policy\n\x00\n\n", "NUL byte in request"),
                (b"request=smtpd_access_policy\nrecipient=" + b"x" * 3000 + b"\n\n",
                 "line longer than 2048 bytes"),
                (b"request=smtpd_access_policy\nno equals sign\n\n", "line is not name=value")]:
            mark = ENV.log.mark()
            s = socket.create_connection(("127.0.0.1", ENV.policy_port), timeout=5)
            s.sendall(data)
            self.assertEqual(s.recv(100), b"", "a bad request must get no answer")
            s.close()
            rec = ENV.log.wait_for(lambda r: r.pid == ENV.milter.pid and reason in r.msg, mark)
            self.assertIsNotNone(rec, "no log line naming %r%s" % (reason, self.diag()))
            self.assertRegex(rec.msg, r"^policy door: 127\.0\.0\.1:\d+: bad request: %s; "
                                      r"closing the connection$" % reason)
        self.assertTrue(ENV.milter.running())
