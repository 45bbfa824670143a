"""The shipped fail2ban filter on audit lines of real sessions through Postfix.

Refused probes come from 127.0.0.1 (502 rejects, then the probe limit's 421)
and ::1 (a 502 reject and a 450 tempfail); 127.0.0.2 is let through by a
rule (action=allow), 127.0.0.3 only noted (action=log), and 127.0.0.4 probes
while the policy is in audit mode (mode=audit: nothing refused).  The
milter's syslog lines and the private Postfix's are written to a file, and
fail2ban-regex with conf/fail2ban/filter.d/milter-cmdgate.conf must match
exactly the refusals: their number and their addresses.

The same cases run against Postfix 3.10 (fail2ban-trixie.test), whose
audit lines carry mta_reply= and whose clients read Postfix's own 500 for
the milter's 5xx (PostfixFacts in test_milter_door.py).

Run through fail2ban.test (automake) or `python3 -m unittest -v
test_fail2ban` as root from this directory; see README.md.
"""

import collections
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_milter_door import Environment  # noqa: E402

SRCDIR = os.environ.get("srcdir") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "..")
FILTER = os.path.join(SRCDIR, "conf", "fail2ban", "filter.d", "milter-cmdgate.conf")
# The filter includes common.conf from the fail2ban installation it is used with.
FAIL2BAN_COMMON = "/etc/fail2ban/filter.d/common.conf"

POLICY = """\
mode = "enforce";
banner = "$j ESMTP $v";
commands = { EXPN = { action = "reject"; }; TURN = { action = "reject"; }; };
rules = (
  { clients = [ "127.0.0.2" ]; action = "allow"; },
  { clients = [ "127.0.0.3" ]; action = "log"; },
  { clients = [ "::1" ]; commands = [ "TURN" ]; action = "tempfail"; }
);
limits = { probes = 3; action = "disconnect"; };
"""
AUDIT_POLICY = POLICY.replace('mode = "enforce";', 'mode = "audit";')

NOT_RECOGNIZED = "500 5.5.2 Error: command not recognized"
REJECTED = "502 5.5.1 %s command not implemented"

ENV = None


def fail2ban_regex():
    return h.find_program("fail2ban-regex")


def missing_prerequisites():
    """Called by runner.py before the run."""
    if fail2ban_regex() is None or not os.path.exists(FAIL2BAN_COMMON):
        return ["fail2ban is not installed (apt-get install fail2ban)"]
    return []


h.share_per_module(globals(), "ENV", lambda: Environment(policy=POLICY).start())


class Fail2banFilterTest(h.SessionTestCase):
    log_idents = ()

    def environment(self):
        return ENV and (ENV.log, ENV.milter)

    def session(self, source, steps, closed=False):
        """One SMTP session from SOURCE: (command, expected reply) STEPS, then QUIT.

        CLOSED: the last step makes Postfix close the connection (421).
        Waits for the milter's close line of the session.
        """
        mark = ENV.log.mark()
        c = h.smtp_client(ENV.postfix, source=source)
        self.clients.append(c)
        try:
            c.connect()
            c.command("EHLO probe.example")
            for command, expected in steps:
                self.assertEqual(c.command(command), expected,
                                 "%s: reply to %r%s" % (source, command, self.diag(c)))
            if closed:
                self.assertTrue(c.wait_closed(5), "no close after 421%s" % self.diag(c))
            else:
                self.assertEqual(c.command("QUIT"), "221 2.0.0 Bye", self.diag(c))
        except h.HarnessError as e:
            self.fail("%s: %s%s" % (source, e, self.diag(c)))
        close = ENV.log.wait_for(
            lambda r: r.pid == ENV.milter.pid and "event=close" in r.msg
            and re.search(r" client=%s " % re.escape(source), r.msg), since=mark, timeout=5)
        self.assertIsNotNone(close, "no event=close line for %s%s" % (source, self.diag(c)))

    def reload(self, text):
        ENV.write_policy(text)
        mark = ENV.log.mark()
        ENV.milter.reload()
        done = ENV.log.wait_for(lambda r: r.pid == ENV.milter.pid
                                and "configuration reloaded from" in r.msg,
                                since=mark, timeout=5)
        self.assertIsNotNone(done, "no reload after SIGUSR1%s" % self.diag())

    def run_filter(self, log_path, *options):
        """fail2ban-regex with the shipped filter; returns its standard output."""
        conf = os.path.join(ENV.workdir, "fail2ban")
        os.makedirs(os.path.join(conf, "filter.d"), exist_ok=True)
        shutil.copy(FAIL2BAN_COMMON, os.path.join(conf, "filter.d"))
        shutil.copy(FILTER, os.path.join(conf, "filter.d"))
        p = subprocess.run([fail2ban_regex(), "-c", conf] + list(options)
                           + [log_path, "milter-cmdgate"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, "fail2ban-regex failed:\n%s\n%s"
                         % (out, p.stderr.decode("utf-8", "replace")))
        return out

    def test_filter_matches_exactly_the_refusals(self):
        self.mark = ENV.log.mark()
        ipv6 = ENV.postfix.ipv6

        def rejected(verb):
            return NOT_RECOGNIZED if ENV.facts.replaces_5xx else REJECTED % verb
        # 3 rejects, then the probe limit: 421 and the connection closes
        self.session("127.0.0.1", [
            ("EXPN", rejected("EXPN")),
            ("XFOO", NOT_RECOGNIZED),                # not under policy: allow
            ("TURN", rejected("TURN")),
            ("expn staff-list", rejected("EXPN")),
            ("EXPN", "421 4.7.0 too many refused commands, closing connection"),
        ], closed=True)
        if ipv6:
            self.session("::1", [
                ("EXPN", rejected("EXPN")),
                ("TURN", "450 4.7.1 TURN command temporarily refused"),
            ])
        self.session("127.0.0.2", [("EXPN", NOT_RECOGNIZED)])    # rule 1: allow
        self.session("127.0.0.3", [("EXPN", NOT_RECOGNIZED)])    # rule 2: log
        self.reload(AUDIT_POLICY)
        self.session("127.0.0.4", [("EXPN", NOT_RECOGNIZED), ("TURN", NOT_RECOGNIZED)])

        records = ENV.log.select(lambda r: r.pid == ENV.milter.pid
                                 or (r.ident or "").startswith(h.POSTFIX_SYSLOG_NAME),
                                 self.mark)
        log_path = os.path.join(ENV.workdir, "mail.log")
        with open(log_path, "w", encoding="utf-8", errors="surrogateescape") as f:
            for r in records:
                f.write(r.raw + "\n")
        milter_lines = [r.msg for r in records if r.pid == ENV.milter.pid]

        # the lines that must not match are really in the file
        def audit(pattern):
            return [m for m in milter_lines if re.search(pattern, m)]
        self.assertEqual(len(audit(r"event=command .*client=127\.0\.0\.1 .*action=allow "
                                   r"reply=none class=none$")), 1, self.diag())
        self.assertEqual(len(audit(r"client=127\.0\.0\.2 rule=1 action=allow reply=none "
                                   r"class=none$")), 1, self.diag())
        self.assertEqual(len(audit(r"client=127\.0\.0\.3 rule=2 action=log reply=none "
                                   r"class=none$")), 1, self.diag())
        self.assertEqual(len(audit(r"client=127\.0\.0\.4 rule=command action=reject "
                                   r"reply=\"502 5\.5\.1 (EXPN|TURN) command not implemented\" "
                                   r"class=5xx( mta_reply=\"[^\"]*\")? mode=audit$")), 2,
                         self.diag())
        refusals = audit(r"^NOQUEUE: event=command .* action=(reject|tempfail|disconnect) "
                         r".* class=[45]xx( mta_reply=\"[^\"]*\")?$")
        expected = collections.Counter({"127.0.0.1": 4})
        if ipv6:
            expected["::1"] = 2
        self.assertEqual(len(refusals), sum(expected.values()), self.diag())

        summary = self.run_filter(log_path)
        m = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed",
                      summary, re.M)
        self.assertIsNotNone(m, "no Lines: summary in\n%s" % summary)
        lines, ignored, matched, missed = (int(g) for g in m.groups())
        self.assertEqual(lines, len(records), summary)
        self.assertEqual((ignored, matched, missed),
                         (0, sum(expected.values()), len(records) - sum(expected.values())),
                         summary + self.diag())

        found = self.run_filter(log_path, "-o", "ip").split()
        self.assertEqual(collections.Counter(found), expected,
                         "addresses fail2ban found%s" % self.diag())


if __name__ == "__main__":
    unittest.main(verbosity=2)
