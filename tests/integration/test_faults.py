"""Faults against a real Postfix 3.7: a milter killed in mid-session and
restarted, a reload storm under load, clients and MTAs that vanish,
thousands of sessions at once, and the file descriptor limit.

One milter on a unix socket serves two private Postfix instances, one with
milter_default_action = tempfail and one with accept.  Each test states
what it measures in its docstring.  Run through faults.test.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import milterproto as mp  # noqa: E402
import rig  # noqa: E402

REFUSED = "502 5.5.1 EXPN command not implemented"
NOT_RECOGNIZED = "500 5.5.2 Error: command not recognized"
UNAVAILABLE = "451 4.7.1 Service unavailable - try again later"  # MTA-FACTS §6

POLICY = """\
socket_mode = "0666";
commands = { EXPN = { action = "reject"; }; TURN = { action = "reject"; }; };
limits = { probes = 0; };
"""


def storm_policy(letter):
    """Two valid policies that differ in every reply text."""
    text = "$verb refused by policy %s %s" % (letter, (letter.lower() * 40))
    return POLICY + 'reply = { code = 550; status = "5.7.1"; text = "%s"; };\n' % text


STORM_REPLIES = {
    "550 5.7.1 EXPN refused by policy %s %s" % (x, x.lower() * 40): x for x in "AB"}

RIG = None


class Env:
    def __init__(self):
        self.rig = rig.Rig(POLICY)
        self.sock = os.path.join(self.rig.workdir, "milter.sock")
        self.milter = None
        self.tempfail = self.accept = None

    def start(self):
        try:
            self.milter = self.rig.milter(socket="unix:" + self.sock)
            milters = {"smtpd_milters": "unix:" + self.sock}
            self.tempfail = self.rig.postfix(milter_default_action="tempfail", extra_main=milters)
            self.accept = self.rig.postfix(milter_default_action="accept", extra_main=milters)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        self.rig.stop()

    def restart(self):
        self.milter = self.rig.milter(socket="unix:" + self.sock)
        return self.milter


h.share_per_module(globals(), "RIG", lambda: Env().start())


def smtpd_serving(postfix, client_port):
    """PID of the smtpd of POSTFIX whose peer is 127.0.0.1:CLIENT_PORT, or None."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if int(local[1], 16) == postfix.port and int(remote[1], 16) == client_port:
                inodes.add(fields[9])
    queue = os.path.realpath(postfix.queue_dir)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() != "smtpd":
                    continue
            if os.path.realpath(os.readlink("/proc/%s/cwd" % pid)) != queue:
                continue
            for fd in os.listdir("/proc/%s/fd" % pid):
                link = os.readlink("/proc/%s/fd/%s" % (pid, fd))
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


class FaultsTest(h.SessionTestCase):
    log_idents = ()
    milter_must_run = False  # a test that killed it restarts it

    def environment(self):
        return RIG and (RIG.rig.log, RIG.milter)

    def setUp(self):
        # the last test's sessions are over (close lines written) before the mark
        if RIG is not None and RIG.milter.running():
            rig.wait_closed_sessions(RIG.rig.log, RIG.milter.pid, 0, 0)
        super().setUp()

    def smtp(self, postfix, source=None):
        c = h.smtp_client(postfix, source=source)
        self.clients.append(c)
        c.connect()
        return c

    def enforced(self, postfix):
        """A new session on POSTFIX gets the milter's refusal."""
        c = self.smtp(postfix)
        self.expect(c, "EHLO enforced.example", "250 CHUNKING")
        self.expect(c, "EXPN", REFUSED)
        self.expect(c, "QUIT", "221 2.0.0 Bye")

    def baseline(self, pid):
        """Threads and descriptors of an idle milter."""
        time.sleep(0.3)
        return rig.threads(pid), rig.fds(pid)

    def assertSettles(self, pid, base):
        now = rig.settle(pid, *base)
        self.assertEqual(now, base, "threads and descriptors (now, before): %r %r%s"
                         % (now, base, self.diag()))

    # -- a milter killed in mid-session --------------------------------------

    def kill_and_restart(self, postfix, in_session, new_session):
        c = self.smtp(postfix)
        self.expect(c, "EHLO victim.example", "250 CHUNKING")
        self.expect(c, "EXPN", REFUSED)
        rig.kill9(RIG.milter)
        self.assertTrue(os.path.exists(RIG.sock), "kill -9 leaves the socket file behind")
        for line, reply in in_session:
            self.expect(c, line, reply)
        d = self.smtp(postfix)
        for line, reply in new_session:
            self.expect(d, line, reply)
        # restart on the stale socket file: libmilter removes it
        RIG.restart()
        self.enforced(postfix)

    def test_01_kill9_tempfail(self):
        """kill -9 mid-session, milter_default_action = tempfail: 451 4.7.1 until restarted."""
        self.kill_and_restart(RIG.tempfail, [
            ("EXPN", UNAVAILABLE),
            ("MAIL FROM:<a@example.org>", UNAVAILABLE),
            ("QUIT", "221 2.0.0 Bye"),
        ], [
            ("EHLO after.example", "250 CHUNKING"),
            ("EXPN", UNAVAILABLE),
            ("MAIL FROM:<a@example.org>", UNAVAILABLE),
            ("QUIT", "221 2.0.0 Bye"),
        ])

    def test_02_kill9_accept(self):
        """kill -9 mid-session, milter_default_action = accept: as if there were no milter."""
        self.kill_and_restart(RIG.accept, [
            ("EXPN", NOT_RECOGNIZED),
            ("MAIL FROM:<a@example.org>", "250 2.1.0 Ok"),
            ("RCPT TO:<postmaster@%s>" % h.MTA_HOSTNAME, "250 2.1.5 Ok"),
            ("QUIT", "221 2.0.0 Bye"),
        ], [
            ("EHLO after.example", "250 CHUNKING"),
            ("EXPN", NOT_RECOGNIZED),
            ("MAIL FROM:<a@example.org>", "250 2.1.0 Ok"),
            ("QUIT", "221 2.0.0 Bye"),
        ])

    def test_03_live_socket_not_taken_over(self):
        """A second daemon on the same unix socket exits 71; the first keeps it."""
        p = subprocess.run([h.milter_binary(), "-f", "-c", RIG.rig.policy_path,
                            "-p", "unix:" + RIG.sock], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 71, p.stdout)
        self.assertEqual(p.stdout.decode(), "milter-cmdgate: cannot open socket unix:%s: "
                         "another process is listening on it\n" % RIG.sock)
        self.assertTrue(RIG.milter.running(), self.diag())
        self.enforced(RIG.tempfail)

    # -- reload storm ------------------------------------------------------------

    def test_04_reload_storm(self):
        """100 SIGUSR1 reloads alternating two policies while 50 clients keep sessions going.

        Every session succeeds; every reply is one of the two whole texts and
        stays the same within a session (a session keeps the policy it began
        with); the audit agrees; RSS returns to its level before the storm.
        """
        m = RIG.milter
        RIG.rig.write_policy(storm_policy("A"))
        self.reload(m)
        self.addCleanup(self.restore_policy, m)
        # warm up: one round of sessions and reloads, then measure
        self.storm(m, clients=50, reloads=10)
        base = self.baseline(m.pid)
        rss_before = rig.rss_kb(m.pid)
        self.mark = RIG.rig.log.mark()
        seen = self.storm(m, clients=50, reloads=100)
        self.assertEqual(set(seen), {"A", "B"}, "both policies must have served sessions")
        self.assertSettles(m.pid, base)
        rss_after = rig.rss_kb(m.pid)
        print("\nreload storm: %d sessions, RSS %d kB before, %d kB after"
              % (sum(seen.values()), rss_before, rss_after))
        if not rig.sanitized():  # ASan keeps freed memory in quarantine
            self.assertLessEqual(rss_after, rss_before + 512,
                                 "RSS grew by %d kB" % (rss_after - rss_before))
        # audit: every verdict names one whole policy, one per session
        for sid, lines in rig.sessions(RIG.rig.log, m.pid, self.mark).items():
            replies = {l["reply"] for l in lines if l["event"] == "command"}
            self.assertLessEqual(len(replies), 1, "session %s mixed policies: %r" % (sid, replies))
            self.assertTrue(replies <= set(STORM_REPLIES), replies)

    def restore_policy(self, m):
        RIG.rig.write_policy(POLICY)
        self.reload(m)

    def reload(self, m):
        mark = RIG.rig.log.mark()
        m.reload()
        rec = RIG.rig.log.wait_for(lambda r: r.pid == m.pid and "configuration reloaded" in r.msg,
                                   since=mark, timeout=10)
        self.assertIsNotNone(rec, "no reload line%s" % self.diag())

    def storm(self, m, clients, reloads):
        """CLIENTS threads run sessions until RELOADS reloads are done; returns {policy: sessions}."""
        done = threading.Event()
        results, errors = [], []

        def client():
            while not done.is_set() or not results:
                try:
                    c = h.smtp_client(RIG.tempfail, timeout=30)
                    c.connect()
                    replies = [c.command("EXPN") for _ in range(5)]
                    c.command("QUIT")
                    c.close()
                except Exception as e:  # any failure is a finding
                    errors.append(repr(e))
                    return
                results.append(replies)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        try:
            for i in range(reloads):
                RIG.rig.write_policy(storm_policy("AB"[(i + 1) % 2]))
                self.reload(m)
        finally:
            done.set()
            for t in threads:
                t.join(60)
        self.assertEqual(errors, [], "sessions failed during the storm%s" % self.diag())
        seen = {}
        for replies in results:
            self.assertIn(replies[0], STORM_REPLIES, replies)
            self.assertEqual(set(replies), {replies[0]}, "policy changed within a session")
            seen[STORM_REPLIES[replies[0]]] = seen.get(STORM_REPLIES[replies[0]], 0) + 1
        return seen

    # -- clients and MTAs that vanish --------------------------------------------

    def test_05_clients_vanish(self):
        """SMTP clients that hang up at every stage, or reset: each session is closed, nothing leaks."""
        m = RIG.milter
        base = self.baseline(m.pid)

        def greet_and_go(c):
            c.connect()

        def ehlo_and_go(c):
            c.connect()
            c.command("EHLO gone.example")

        def half_line(c):
            c.connect()
            c.send_raw(b"EXP")

        def reset(c):
            c.connect()
            c.command("EHLO reset.example")
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        def at_once(c):
            c.sock = socket.create_connection(("127.0.0.1", RIG.tempfail.port))

        ways = [greet_and_go, ehlo_and_go, half_line, reset, at_once]
        for i in range(50):
            c = h.smtp_client(RIG.tempfail)
            ways[i % len(ways)](c)
            c.close()
        # every session the milter saw gets its close line
        found = rig.wait_closed_sessions(RIG.rig.log, m.pid, self.mark, 40, timeout=20)
        open_ones = [s for s, lines in found.items() if lines[-1]["event"] != "close"]
        self.assertEqual(open_ones, [], "sessions without a close line%s" % self.diag())
        self.assertGreaterEqual(len(found), 40, self.diag())
        self.assertSettles(m.pid, base)
        self.enforced(RIG.tempfail)

    def test_06_smtpd_killed(self):
        """Postfix's smtpd killed (-9) in mid-session: the milter closes the session."""
        m = RIG.milter
        base = self.baseline(m.pid)
        c = self.smtp(RIG.tempfail)
        self.expect(c, "EHLO doomed.example", "250 CHUNKING")
        self.expect(c, "EXPN", REFUSED)
        pid = smtpd_serving(RIG.tempfail, c.sock.getsockname()[1])
        self.assertIsNotNone(pid, "no smtpd found for the session")
        os.kill(pid, signal.SIGKILL)
        found = rig.wait_closed_sessions(RIG.rig.log, m.pid, self.mark, 1)
        self.assertEqual(len(found), 1, self.diag())
        close = list(found.values())[0][-1]
        self.assertEqual(rig.items(close), [
            ("event", "close"), ("door", "milter"), ("client", "127.0.0.1"),
            ("helo", "doomed.example"), ("commands", "1"), ("refused", "1"),
            ("2xx", "1"), ("3xx", "0"), ("4xx", "0"), ("5xx", "1")], self.diag())
        self.assertSettles(m.pid, base)
        self.enforced(RIG.tempfail)

    def test_07_mta_hangs_up_in_milter_protocol(self):
        """A raw MTA that hangs up at each step, mid-packet, or sends garbage: daemon unharmed."""
        m = RIG.milter
        base = self.baseline(m.pid)

        def run(steps):
            c = mp.MilterClient(RIG.sock, timeout=10).open()
            try:
                steps(c)
            except mp.MilterError:
                pass  # the milter hung up on garbage: fine
            finally:
                c.close()

        run(lambda c: None)                                   # connect, vanish
        run(lambda c: c.negotiate())                          # after option negotiation
        run(lambda c: (c.negotiate(), c.connect()))           # after connect
        run(lambda c: (c.negotiate(), c.connect(), c.helo("x.example"),
                       c.sock.sendall(struct.pack(">I", 100) + b"UEXP")))  # mid-packet
        run(lambda c: (c.negotiate(), c.connect(),
                       c.sock.sendall(b"\xff\xff\xff\xffU"), c.recv()))  # absurd length
        run(lambda c: (c.negotiate(), c.connect(), c.send(b"Z", b"junk"), c.recv()))
        run(lambda c: (c.negotiate(), c.unknown("EXPN")))     # command before connect
        run(lambda c: (c.negotiate(), c.connect(None), c.unknown("EXPN"), c.unknown("EXPN")))
        found = rig.wait_closed_sessions(RIG.rig.log, m.pid, self.mark, 5)
        self.assertEqual([s for s, l in found.items() if l[-1]["event"] != "close"], [],
                         self.diag())
        raw = [l for l in found.values() if l[0]["client"] in ("192.0.2.7", "unknown")]
        self.assertEqual(len(raw), 5, self.diag())
        self.assertSettles(m.pid, base)
        self.assertTrue(m.running(), self.diag())
        self.enforced(RIG.tempfail)

    # -- thousands at once ---------------------------------------------------------

    def test_08_two_thousand_sessions(self):
        """2000 MTA connections at once: all answered, then every descriptor and thread returned."""
        m = RIG.milter
        rig.raise_fd_limit()
        base = self.baseline(m.pid)
        n = 2000
        clients = []
        try:
            for _ in range(n):
                clients.append(mp.MilterClient(RIG.sock, timeout=60).open())
            for c in clients:  # pipelined: everything sent before anything is read
                c.send(mp.OPTNEG, struct.pack(">III", mp.VERSION, mp.ACTIONS, mp.PROTOCOL))
            for c in clients:
                self.assertEqual(c.recv()[0], mp.OPTNEG)
                c.sock.sendall(mp.packet(mp.MACRO, mp.CONNECT + b"j\0mx\0")
                               + mp.packet(mp.CONNECT, b"many.example\x004\x00\x19192.0.2.9\0"))
            for c in clients:
                self.assertEqual(c.recv()[0], mp.CONTINUE)
            held = (rig.threads(m.pid), rig.fds(m.pid))
            for c in clients:
                c.send(mp.UNKNOWN, b"EXPN\0")
            answers = [mp.reply_text(c.recv()) for c in clients]
            self.assertEqual(set(answers), {REFUSED})
            print("\n%d sessions open: milter has %d threads, %d descriptors (idle: %d, %d)"
                  % (n, held[0], held[1], base[0], base[1]))
            self.assertGreaterEqual(held[1], base[1] + n)
        finally:
            for c in clients:
                try:
                    c.quit()
                except OSError:
                    c.close()
        found = rig.wait_closed_sessions(RIG.rig.log, m.pid, self.mark, n, timeout=60)
        mine = [l for l in found.values() if l[0]["client"] == "192.0.2.9"]
        self.assertEqual(sum(1 for l in mine if l[-1]["event"] == "close"), n)
        self.assertSettles(m.pid, base)
        self.enforced(RIG.tempfail)

    def test_09_descriptor_limit(self):
        """With 128 descriptors: the budget is logged, the session past it gets a tempfail
        (Postfix: 451 4.7.1), no busy loop, and sessions are taken again once some end."""
        r = RIG.rig
        m = r.milter(wrapper=["prlimit", "--nofile=128:128", "--"])
        pf = r.postfix(milter_port=m.port)
        rec = r.log.wait_for(lambda x: x.pid == m.pid and "file descriptor limit" in x.msg,
                             since=self.mark, timeout=5)
        self.assertIsNotNone(rec, self.diag())
        budget = int(rec.msg.split("up to ")[1].split()[0])
        self.assertEqual(rec.msg, "file descriptor limit 128: up to %d MTA connections at once"
                         % budget)
        target = ("127.0.0.1", m.port)
        held = [mp.MilterClient(target).session() for _ in range(budget)]
        try:
            extra = mp.MilterClient(target).open()
            extra.negotiate()
            self.assertEqual(extra.connect()[0], mp.TEMPFAIL, "session past the budget")
            extra.close()
            warning = r.log.wait_for(lambda x: x.pid == m.pid and "refusing new ones" in x.msg,
                                     since=self.mark, timeout=5)
            self.assertIsNotNone(warning, self.diag())
            c = self.smtp(pf)
            self.expect(c, "EXPN", UNAVAILABLE)
            self.expect(c, "QUIT", "221 2.0.0 Bye")
            ticks = cpu_ticks(m.pid)
            time.sleep(1)
            self.assertLess(cpu_ticks(m.pid) - ticks, 10, "the milter spins at its limit")
            held.pop().quit()
            time.sleep(0.2)
            d = self.smtp(pf)
            self.expect(d, "EXPN", REFUSED)
            self.expect(d, "QUIT", "221 2.0.0 Bye")
        finally:
            for c in held:
                c.close()
        m2 = r.milter(wrapper=["prlimit", "--nofile=64:4096", "--"])
        rec = r.log.wait_for(lambda x: x.pid == m2.pid and "file descriptor limit" in x.msg,
                             since=self.mark, timeout=5)
        self.assertIsNotNone(rec, r.log.excerpt(self.mark, pids={m2.pid}))
        self.assertTrue(rec.msg.startswith("file descriptor limit raised from 64 to 4096: up to "),
                        rec.msg)
        with open("/proc/%d/limits" % m2.pid) as f:
            line = [l for l in f if l.startswith("Max open files")][0]
        self.assertEqual(line.split()[3:5], ["4096", "4096"], line)

    def test_10_sigterm_is_an_orderly_stop(self):
        """SIGTERM with a session open and the policy door listening: exit 0,
        "exiting with status 0" logged, socket and pid file removed (it used
        to die of the signal instead)."""
        r = RIG.rig
        sock = os.path.join(r.workdir, "term.sock")
        pidfile = os.path.join(r.workdir, "term.pid")
        # with the policy door open too: its thread must not take the signal
        path = os.path.join(r.workdir, "term.conf")
        r.write_policy(POLICY + 'policy_socket = "inet:%d@127.0.0.1";\n' % h.pick_port(), path)
        m = r.milter(policy_path=path, socket="unix:" + sock, extra_args=["-P", pidfile])
        c = mp.MilterClient(sock).session()
        self.assertEqual(mp.reply_text(c.unknown("EXPN")), REFUSED)
        self.assertEqual(m.stop(timeout=20), 0, m.output())
        c.close()
        rec = r.log.wait_for(lambda x: x.pid == m.pid and "exiting" in x.msg,
                             since=self.mark, timeout=5)
        self.assertIsNotNone(rec, RIG.rig.log.excerpt(self.mark, pids={m.pid}))
        self.assertEqual(rec.msg, "milter-cmdgate exiting with status 0")
        self.assertFalse(os.path.exists(sock))
        self.assertFalse(os.path.exists(pidfile))

    def test_11_door_client_half_closes(self):
        """A policy-door client that sends its requests and shuts down its side
        still gets every answer (they were dropped with the connection)."""
        r = RIG.rig
        port = h.pick_port()
        path = os.path.join(r.workdir, "door.conf")
        door_policy = POLICY.replace("TURN = {", 'VRFY = { action = "reject"; }; TURN = {')
        r.write_policy(door_policy + 'policy_socket = "inet:%d@127.0.0.1";\n' % port, path)
        m = r.milter(policy_path=path)
        self.assertTrue(h.wait_until(lambda: h.port_listening("127.0.0.1", port), 5), m.output())
        vrfy = (b"request=smtpd_access_policy\nprotocol_state=VRFY\n"
                b"client_address=192.0.2.8\nrecipient=root\n\n")
        answer = b"action=502 5.5.1 VRFY command not implemented\n\n"
        # all of them write and shut down before any is read: the door then
        # reads requests and end of input in one go
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(50)]
        for s in clients:
            s.sendall(vrfy * 2)
            s.shutdown(socket.SHUT_WR)
        lost = 0
        for s in clients:
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.close()
            lost += got != answer * 2
        self.assertEqual(lost, 0, "connections whose answers were lost")

    def test_99_milter_survived(self):
        self.assertTrue(RIG.milter.running(), self.diag())


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
