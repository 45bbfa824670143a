"""The daemon under valgrind memcheck through an integration session:
refusals, the probe limit, hostile lines, the policy door (pipelined,
malformed, cut off), reloads (good and broken), concurrent sessions and
an MTA hanging up mid-packet, then SIGTERM.
Wants zero errors and zero definitely-lost bytes, and prints valgrind's
summary.  An AddressSanitizer build runs the same session without valgrind
and wants no sanitizer report and exit 0.  (Blocks "possibly lost" are the stacks of libmilter's worker
threads, which are still running when the process exits; "suppressed" is
libconfig's own leak on one kind of syntax error, see valgrind.supp.)
Run through memcheck.test.
"""

import os
import re
import shutil
import socket
import struct
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import milterproto as mp  # noqa: E402
import rig  # noqa: E402

POLICY = """\
policy_socket = "inet:%(policy_port)d@127.0.0.1";
commands = { EXPN = { action = "reject"; }; TURN = { action = "tempfail"; };
             VRFY = { action = "reject"; }; };
rules = ( { clients = [ "127.0.0.2" ]; action = "allow"; } );
limits = { probes = 3; action = "disconnect"; };
"""

REFUSED = "502 5.5.1 EXPN command not implemented"
HERE = os.path.dirname(os.path.abspath(__file__))
VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
            "--track-origins=yes", "--num-callers=30",
            "--suppressions=" + os.path.join(HERE, "valgrind.supp")]



class MemcheckTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        # An ASan build checks itself (valgrind cannot run it): same session,
        # and the runner fails on any AddressSanitizer or LeakSanitizer report.
        self.asan = rig.sanitized()
        if not self.asan and shutil.which("valgrind") is None:
            self.skipTest("valgrind is not installed (apt-get install valgrind)")
        self.policy_port = h.pick_port()
        self.policy = POLICY % {"policy_port": self.policy_port}
        self.rig = rig.Rig(self.policy)
        self.addCleanup(self.rig.stop)
        self.vlog = os.path.join(self.rig.workdir, "valgrind.log")
        self.milter = self.rig.milter(wrapper=[] if self.asan else
                                      VALGRIND + ["--log-file=" + self.vlog])
        self.postfix = self.rig.postfix(milter_port=self.milter.port)

    def smtp(self, lines, source=None):
        """Replies to LINES, up to the one after which the server closed."""
        c = h.smtp_client(self.postfix, source=source, timeout=60)
        replies = []
        try:
            c.connect()
            for line in lines:
                replies.append(c.command(line))
        except h.ConnectionClosed:
            pass
        finally:
            c.close()
        return replies

    def reload(self, text, wanted):
        self.rig.write_policy(text)
        mark = self.rig.log.mark()
        self.milter.reload()
        rec = self.rig.log.wait_for(lambda r: r.pid == self.milter.pid and wanted in r.msg,
                                    since=mark, timeout=30)
        self.assertIsNotNone(rec, "no %r after SIGUSR1" % wanted)

    def policy_door(self):
        """Requests to the policy door: pipelined, malformed, cut off."""
        vrfy = (b"request=smtpd_access_policy\nprotocol_state=VRFY\nclient_address=192.0.2.7\n"
                b"recipient=root\n\n")
        answer = b"action=502 5.5.1 VRFY command not implemented\n\n"
        for data, wanted in ((vrfy * 3, answer * 3), (b"request=junk\n\n", b""),
                             (vrfy[:30], None), (b"x" * 20000, b"")):
            s = socket.create_connection(("127.0.0.1", self.policy_port), timeout=60)
            s.sendall(data)
            got = b""
            # a whole answer, or the door closing on a bad request; a cut-off
            # request is left hanging and then dropped by the client
            while wanted is not None and (wanted == b"" or len(got) < len(wanted)):
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:  # closed with our bytes unread
                    chunk = b""
                if not chunk:
                    break
                got += chunk
            s.close()
            if wanted is not None:
                self.assertEqual(got, wanted)

    def test_session_under_memcheck(self):
        m = self.milter
        self.assertEqual(self.smtp(["EHLO a.example", "EXPN", "XFOO", "TURN", "EXPN", "EXPN",
                                    "QUIT"])[1:], [
            REFUSED, "500 5.5.2 Error: command not recognized",
            "450 4.7.1 TURN command temporarily refused", REFUSED,
            "421 4.7.0 too many refused commands, closing connection"])
        self.assertEqual(self.smtp(["EXPN", "QUIT"], source="127.0.0.2")[0],
                         "500 5.5.2 Error: command not recognized")
        self.smtp([b"EHLO " + b"h\x1b[31m" * 700, b"X" * 3000, b"X\xe2\x80\xae%n%s", "QUIT"])
        self.policy_door()
        self.reload(self.policy.replace("probes = 3", "probes = 0"), "configuration reloaded")
        self.reload("commands = { EXPN = { action = \"nope\"; }; };\n", "keeping previous")
        # a syntax error after a string: libconfig 1.5 leaks the string (valgrind.supp)
        self.reload('""\n', "keeping previous")
        threads = [threading.Thread(target=self.smtp, args=(["EHLO b.example", "EXPN", "QUIT"],))
                   for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        c = mp.MilterClient(("127.0.0.1", m.port), timeout=60).session()
        c.sock.sendall(struct.pack(">I", 100) + b"UEXP")
        c.close()
        c = mp.MilterClient(("127.0.0.1", m.port), timeout=60).session()
        self.assertEqual(mp.reply_text(c.unknown("EXPN")), REFUSED)
        c.quit()
        # before SIGTERM: every session closed
        rig.wait_closed_sessions(self.rig.log, m.pid, 0, 15, timeout=60)
        status = m.stop(timeout=60)
        if self.asan:
            self.assertEqual(status, 0, m.output())
            self.assertEqual(m.problems(), [])
            print("\nAddressSanitizer build: no report from the daemon, exit 0")
            return
        with open(self.vlog) as f:
            report = f.read()
        summary = [l for l in report.splitlines()
                   if re.search(r"(ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|"
                                r"still reachable|suppressed:|in use at exit|total heap usage|"
                                r"All heap blocks)", l)]
        print("\nvalgrind memcheck of milter-cmdgate:\n" + "\n".join(summary))
        self.assertEqual(status, 0, report)
        self.assertRegex(report, r"ERROR SUMMARY: 0 errors from 0 contexts", report)
        self.assertTrue(re.search(r"definitely lost: 0 bytes in 0 blocks", report)
                        or "All heap blocks were freed" in report, report)


def shutdown():
    """Called by runner.py after the run; the test cleans up after itself."""
