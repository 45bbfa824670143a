"""Hostile SMTP lines through a real Postfix 3.7: the reply is intact and
the audit line shows the client's bytes escaped, field by field.

Postfix 3.7 hands the milter only the verb of an unknown command, and the
HELO name as its own event.  What it does to a line first, as measured:
- lines longer than line_length_limit (2048) are cut there, the rest of
  the line is dropped ("request longer than 2048" in its log);
- a NUL ends the line; a bare CR separates words like a space;
- a command that does not start with a letter is a "non-SMTP command"
  (221 2.7.0 Error: I can break rules, too. Goodbye.) and never reaches
  the milter: so hostile bytes follow a letter here;
- with smtputf8_enable = yes (the default) invalid UTF-8 gets
  "500 5.5.2 Error: bad UTF-8 syntax" before the milter sees it; this
  instance turns SMTPUTF8 off so that the bytes reach the milter.
Run through hostile.test (milter-door.test's runner).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import rig  # noqa: E402

POLICY = """\
banner = "$j ESMTP $v";
reply = { code = 502; status = "5.5.1"; text = "$verb refused: 100% sure, $$5 %n%s"; };
commands = { EXPN = { action = "reject"; }; TURN = { action = "reject"; }; };
limits = { probes = 0; };
"""

REFUSED = "502 5.5.1 EXPN refused: 100% sure, $5 %n%s"
NOT_RECOGNIZED = "500 5.5.2 Error: command not recognized"
CUT = "..."  # audit_escape's mark for a value cut at 256 bytes

RIG = None


def start_milter_and_postfix(r):
    r.milter()
    r.postfix(milter_port=r.milters[0].port, extra_main={"smtputf8_enable": "no"})


h.share_per_module(globals(), "RIG", lambda: rig.started(POLICY, start_milter_and_postfix))


class HostileLinesTest(h.SessionTestCase):
    def environment(self):
        return RIG and (RIG.log, RIG.milters[0])

    def session(self, commands, helo=None):
        """One SMTP session: optional EHLO, then COMMANDS (bytes, expected reply).

        Returns the session's audit lines (connect, commands..., close).
        """
        self.mark = RIG.log.mark()
        c = h.smtp_client(RIG.postfixes[0])
        try:
            c.connect()
            if helo is not None:
                got = c.command(b"EHLO " + helo)
                self.assertTrue(got.startswith("250 "), self.diag(c))
            for line, expected in commands:
                self.assertEqual(c.command(line), expected, "reply to %r%s" % (line, self.diag(c)))
            self.assertEqual(c.command("QUIT"), "221 2.0.0 Bye", self.diag(c))
        except h.HarnessError as e:
            self.fail("%s%s" % (e, self.diag(c)))
        finally:
            c.close()
        found = rig.wait_closed_sessions(RIG.log, self.milter.pid, self.mark, 1)
        self.assertEqual(len(found), 1, "one milter session expected%s" % self.diag(c))
        lines = list(found.values())[0]
        self.assertEqual([l["event"] for l in lines],
                         ["connect"] + ["command"] * len(commands) + ["close"], self.diag(c))
        return lines

    def assertField(self, line, key, escaped):
        """KEY's value in LINE's raw text is exactly ESCAPED (quotes included)."""
        self.assertEqual(h.audit_raw_fields(line.raw).get(key), escaped, line.raw)

    def assertVerbLine(self, line, verb_field, action="allow", reply="none", cls="none",
                       rule="default"):
        self.assertField(line, "verb", verb_field)
        self.assertEqual(rig.items(line)[:2], [("event", "command"), ("door", "milter")])
        self.assertEqual(rig.items(line)[3:], [
            ("client", "127.0.0.1"), ("rule", rule), ("action", action), ("reply", reply),
            ("class", cls)], line.raw)

    # -- the verb --------------------------------------------------------------

    def test_01_long_verbs(self):
        """512, 2048 and 5000-byte verbs: Postfix's 500; the audit keeps 256 bytes and marks the cut."""
        lengths = (512, 2048, 5000)
        lines = self.session([(b"X" * n, NOT_RECOGNIZED) for n in lengths])
        for line in lines[1:-1]:
            self.assertVerbLine(line, '"%s%s"' % ("X" * 256, CUT))
            self.assertEqual(line["verb"], "X" * 256 + CUT)

    def test_02_long_arguments_of_a_refused_verb(self):
        """EXPN with 512/2048/5000-byte arguments: the whole refusal line, exactly."""
        lines = self.session([(b"EXPN " + b"a" * n, REFUSED) for n in (512, 2048, 5000)])
        for line in lines[1:-1]:
            # Postfix 3.7 passes the verb only: no arg= to log
            self.assertVerbLine(line, "EXPN", "reject", REFUSED, "5xx", "command")
            self.assertNotIn("arg", line)

    def test_03_nul_and_bare_cr(self):
        """A NUL ends the line, a bare CR splits it: the verb the milter sees."""
        lines = self.session([(b"X\x00Y", NOT_RECOGNIZED), (b"EXPN\x00junk", REFUSED),
                              (b"X\rY", NOT_RECOGNIZED), (b"EXPN\rjunk", REFUSED)])
        self.assertVerbLine(lines[1], "X")
        self.assertVerbLine(lines[2], "EXPN", "reject", REFUSED, "5xx", "command")
        self.assertVerbLine(lines[3], "X")
        self.assertVerbLine(lines[4], "EXPN", "reject", REFUSED, "5xx", "command")

    def test_04_escape_sequences(self):
        """Terminal escape sequences in the verb: logged as \\x1b, never raw."""
        verbs = [b"X\x1b[31mRED", b"EXPN\x1b[2J", b"X\x1b]0;title\x07", b"X\x7f\x08\x08"]
        lines = self.session([(v, NOT_RECOGNIZED) for v in verbs])
        for raw, line in zip(verbs, lines[1:-1]):
            self.assertVerbLine(line, h.audit_quoted(raw))
            self.assertNotIn("\x1b", line.raw)

    def test_05_right_to_left_override(self):
        """U+202E (and U+2066 isolates) in the verb: escaped byte by byte."""
        verbs = [b"X\xe2\x80\xaeNPXE", b"X\xe2\x81\xa6EXPN\xe2\x81\xa9"]
        lines = self.session([(v, NOT_RECOGNIZED) for v in verbs])
        for raw, line in zip(verbs, lines[1:-1]):
            self.assertVerbLine(line, h.audit_quoted(raw))

    def test_06_format_directives(self):
        """%n%s in the verb is plain text in the log; the refusal's own % reaches the client."""
        lines = self.session([(b"X%n%s%x%p", NOT_RECOGNIZED), (b"EXPN", REFUSED)])
        self.assertVerbLine(lines[1], "X%n%s%x%p")
        self.assertVerbLine(lines[2], "EXPN", "reject", REFUSED, "5xx", "command")
        self.assertField(lines[2], "reply", '"%s"' % REFUSED.replace('"', '\\"'))

    def test_07_invalid_utf8(self):
        """Invalid UTF-8 (with SMTPUTF8 off, so Postfix lets it through): \\xHH."""
        verbs = [b"X\xff\xfe", b"X\xc3", b"X\xed\xa0\x80", b"X\xc0\xafY"]
        lines = self.session([(v, NOT_RECOGNIZED) for v in verbs])
        for raw, line in zip(verbs, lines[1:-1]):
            self.assertVerbLine(line, h.audit_quoted(raw))

    # -- the HELO name ---------------------------------------------------------

    def helo(self, name):
        """EHLO NAME, then EXPN: the refusal intact; returns the close line."""
        lines = self.session([(b"EXPN", REFUSED)], helo=name)
        self.assertVerbLine(lines[1], "EXPN", "reject", REFUSED, "5xx", "command")
        self.assertEqual(rig.items(lines[-1])[:2], [("event", "close"), ("door", "milter")])
        return lines[-1]

    def test_10_long_helo(self):
        """512/2048/5000-byte HELO names: 256 bytes kept, the cut marked."""
        for n in (512, 2048, 5000):
            close = self.helo(b"h" * n)
            self.assertField(close, "helo", '"%s%s"' % ("h" * 256, CUT))

    def test_11_hostile_helo(self):
        """ESC, RTL override, %n%s, invalid UTF-8, NUL and bare CR in the HELO name."""
        cases = [
            (b"a\x1b[31mb", h.audit_quoted(b"a\x1b[31mb")),
            (b"\xe2\x80\xaeabc", h.audit_quoted(b"\xe2\x80\xaeabc")),
            (b"%n%s", "%n%s"),
            (b"\xff\xfe", h.audit_quoted(b"\xff\xfe")),
            (b"a\x00b", "a"),          # the NUL ends the line
            (b"a\rb", '"a b"'),        # Postfix: a bare CR separates words
            (b'q"uote\\back=x', h.audit_quoted(b'q"uote\\back=x')),
        ]
        for name, field in cases:
            close = self.helo(name)
            self.assertField(close, "helo", field)

    def test_99_milter_survived(self):
        self.assertTrue(self.milter.running(), self.diag())
