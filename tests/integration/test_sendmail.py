"""milter-cmdgate behind a real Sendmail 8.17: the socketmap door and the milter door.

Sendmail never shows VRFY or EXPN to a milter (MTA-FACTS §1); the shipped
conf/sendmail-cmdgate.mc asks the socketmap door from check_vrfy and
check_expn instead, and attaches the milter for the rest.  One daemon
serves both doors; private Sendmail instances (sendmail_mta.py) are built
from the shipped fragment:

  main         the fragment as shipped (fail closed), both doors live,
               on 127.0.0.1 and [::1]
  map_fault    fail closed, milter live, socketmap door replaced by a fake
               that is down, slow or answers PERM
  down_closed  fail closed, nobody on either socket
  down_open    CMDGATE_FAIL_OPEN, nobody on either socket

Replies and audit lines are compared exactly.  Each test uses its own
client address, because refusals are counted per address (limits.window).
"""

import os
import shutil
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import sendmail_mta as sm  # noqa: E402

POLICY = r"""
socketmap_socket = "inet:%(map_port)d@127.0.0.1";
banner = "$j ESMTP Sendmail $v/$Z; $b";
commands = {
  VRFY = { action = "reject"; reply = { text = "VRFY disabled by policy"; }; };
  EXPN = { action = "reject"; };
  XFOO = { action = "reject"; };
};
rules = (
  { clients = [ "127.0.0.2" ]; action = "allow"; },
  { clients = [ "127.0.0.3" ]; commands = [ "VRFY" ]; action = "reject";
    reply = { code = 550; status = "5.7.1"; text = "no \"VRFY\" \\ for 100%% of you"; }; }
);
limits = { probes = 3; window = 600; action = "disconnect"; };
"""

HOST = sm.MTA_HOSTNAME
VRFY_REFUSED = "502 5.5.1 VRFY disabled by policy"
EXPN_REFUSED = "502 5.5.1 EXPN command not implemented"
XFOO_REFUSED = "502 5.5.1 XFOO command not implemented"
LIMIT_REPLY = "421 4.7.0 too many refused commands, closing connection"
MAP_DOWN = "451 4.3.0 Command policy unavailable, try again later"
ROOT_OK = "250 2.1.5 <root@%s>" % HOST  # Sendmail's own answer to VRFY/EXPN root

ENV = None


def missing_prerequisites():
    """Called by runner.py before the run (also fetches Sendmail on first use)."""
    return sm.missing_prerequisites()


class FakeSocketmap:
    """A socketmap daemon that misbehaves on purpose: mode "perm" answers PERM,
    "slow" never answers; stop() closes everything (nobody listens)."""

    def __init__(self, port):
        self.port = port
        self.mode = None
        self.listener = None
        self.conns = []
        self.lock = threading.Lock()

    def start(self, mode):
        self.stop()
        self.mode = mode
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(8)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            while conn.recv(4096):
                if self.mode == "perm":
                    conn.sendall(b"9:PERM test,")
        except OSError:
            pass

    def stop(self):
        with self.lock:
            for s in [self.listener] + self.conns:
                if s is not None:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
            self.listener, self.conns = None, []


class Environment:
    def __init__(self):
        self.workdir = self.milter = self.fake = None
        self.instances = {}

    def start(self):
        try:
            self.log = h.MailLog()
            h.check_syslog(self.log)
            sm.reap_stale()
            self.workdir = tempfile.mkdtemp(prefix="cmdgate-it-sm-")
            h.mark_owned(self.workdir)
            self.map_port = h.pick_port()
            path = os.path.join(self.workdir, "cmdgate.conf")
            with open(path, "w") as f:
                f.write(POLICY % {"map_port": self.map_port})
            self.milter = h.MilterProcess(path, workdir=self.workdir).start()
            # logged once every socket listens
            if self.log.wait_for(lambda r: r.pid == self.milter.pid
                                 and r.msg.startswith("socketmap door listening on"),
                                 timeout=5) is None:
                raise h.HarnessError("the socketmap door does not listen:\n"
                                     + self.milter.output())
            self.fake = FakeSocketmap(h.pick_port())
            dead = h.pick_port()  # nobody listens here
            for name, kwargs in (
                    ("main", dict(map_port=self.map_port, milter_port=self.milter.port)),
                    ("map_fault", dict(map_port=self.fake.port, milter_port=self.milter.port,
                                       map_timeout=1, ipv6=False)),
                    ("down_closed", dict(map_port=dead, milter_port=dead, ipv6=False)),
                    ("down_open", dict(map_port=dead, milter_port=dead, fail_open=True,
                                       ipv6=False))):
                self.instances[name] = sm.SendmailInstance(**kwargs).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for part in list(self.instances.values()) + [self.milter]:
            try:
                if part is not None:
                    part.stop()
            except Exception:
                pass
        self.instances = {}
        if self.fake is not None:
            self.fake.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


h.share_per_module(globals(), "ENV", lambda: Environment().start())


def map_line(verb, arg, client, rule, action, reply, cls):
    return [("event", "command"), ("door", "socketmap"), ("verb", verb), ("arg", arg),
            ("client", client), ("rule", rule), ("action", action), ("reply", reply),
            ("class", cls)]


def refused(verb, arg, client, reply):
    return map_line(verb, arg, client, "command", "reject", reply, "5xx")


class SendmailTest(h.SessionTestCase):
    log_idents = (sm.SYSLOG_IDENT,)

    def environment(self):
        return ENV and (ENV.log, ENV.milter)

    def open(self, source, instance="main"):
        mta = ENV.instances[instance]
        if not mta.running():
            self.fail("Sendmail %s is not running:\n%s" % (instance, mta.output()))
        c = h.SMTPClient("::1" if ":" in source else "127.0.0.1", mta.port, source=source)
        self.clients.append(c)
        try:
            greeting = c.connect()
        except h.HarnessError as e:
            self.fail("connect from %s: %s%s" % (source, e, self.diag(c)))
        self.assertRegex(greeting, r"^220 %s ESMTP Sendmail 8\.\d+\.\d+(\.\d+)?/8\.[\d.]+; "
                         r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [-+A-Z0-9]+$"
                         % HOST.replace(".", r"\."), self.diag(c))
        return c

    def audit(self, door, count, client=None, address=None):
        """The daemon's door=DOOR audit lines since setUp (at least COUNT), as item
        lists; only those of client ADDRESS when given."""
        def wanted(r):
            if r.pid != ENV.milter.pid or not h.is_audit_message(r.msg):
                return False
            line = h.parse_audit(r.msg)
            return line.get("door") == door and address in (None, line.get("client"))
        if not h.wait_until(lambda: len(ENV.log.select(wanted, self.mark)) >= count, 5):
            self.fail("expected %d door=%s lines%s" % (count, door, self.diag(client)))
        lines = [h.parse_audit(r.msg) for r in ENV.log.select(wanted, self.mark)]
        self.assertEqual([l.prefix for l in lines], ["NOQUEUE"] * len(lines), self.diag(client))
        return [l.items for l in lines]

    def milter_session(self, client, address):
        """The door=milter lines of ADDRESS's one session since setUp, up to its close line."""
        def closed():
            lines = self.audit("milter", 1, client, address)
            return lines if lines[-1][0] == ("event", "close") else None
        lines = h.wait_until(closed, 5)
        if not lines:
            self.fail("no event=close line%s" % self.diag(client))
        sessions = {dict(l)["session"] for l in lines}
        self.assertEqual(len(sessions), 1, "one session expected%s" % self.diag(client))
        return [[(k, "S" if k == "session" else v) for k, v in l] for l in lines]

    @staticmethod
    def connect_line(greeting, address, name):
        """The banner audited is the greeting the client read, date included ($b)."""
        return [("event", "connect"), ("door", "milter"), ("session", "S"), ("client", address),
                ("name", name), ("banner", greeting), ("class", "2xx")]

    # -- the socketmap door --------------------------------------------------

    def test_01_stranger_refused(self):
        """127.0.0.11: VRFY and EXPN get the policy's 502; the argument as typed."""
        c = self.open("127.0.0.11")
        self.expect(c, "VRFY Root", VRFY_REFUSED)
        self.expect(c, "EXPN staff-list", EXPN_REFUSED)
        self.expect(c, "QUIT", "221 2.0.0 %s closing connection" % HOST)
        self.assertEqual(self.audit("socketmap", 2, c), [
            refused("VRFY", "Root", "127.0.0.11", VRFY_REFUSED),
            refused("EXPN", "staff-list", "127.0.0.11", EXPN_REFUSED)])
        self.assertEqual(self.milter_session(c, "127.0.0.11"), [
            self.connect_line(c.transcript[0][1], "127.0.0.11", "[127.0.0.11]"),
            [("event", "close"), ("door", "milter"), ("session", "S"),
             ("client", "127.0.0.11"), ("commands", "0"), ("refused", "0"),
             ("2xx", "1"), ("3xx", "0"), ("4xx", "0"), ("5xx", "0")]])

    def test_02_allowed_client_answered_by_sendmail(self):
        """127.0.0.2 (rule 1, allow): Sendmail answers VRFY and EXPN itself."""
        c = self.open("127.0.0.2")
        self.expect(c, "VRFY root", ROOT_OK)
        self.expect(c, "EXPN root", ROOT_OK)
        self.expect(c, "QUIT", "221 2.0.0 %s closing connection" % HOST)
        self.assertEqual(self.audit("socketmap", 2, c), [
            map_line("VRFY", "root", "127.0.0.2", "1", "allow", "none", "none"),
            map_line("EXPN", "root", "127.0.0.2", "1", "allow", "none", "none")])
        self.assertEqual(self.milter_session(c, "127.0.0.2")[0],
                         self.connect_line(c.transcript[0][1], "127.0.0.2", sm.TRUSTED_NAME))

    def test_03_reply_text_kept_verbatim(self):
        """Quotes, a backslash and % in the policy's text reach the client unchanged."""
        c = self.open("127.0.0.3")
        self.expect(c, "VRFY root", '550 5.7.1 no "VRFY" \\ for 100% of you')
        self.expect(c, "EXPN root", EXPN_REFUSED)
        self.assertEqual(self.audit("socketmap", 2, c), [
            map_line("VRFY", "root", "127.0.0.3", "2", "reject",
                     '550 5.7.1 no "VRFY" \\ for 100% of you', "5xx"),
            refused("EXPN", "root", "127.0.0.3", EXPN_REFUSED)])

    def test_04_ipv6_client(self):
        """::1 reaches the door as IPv6:0:0:0:0:0:0:0:1 and is audited as ::1."""
        if not ENV.instances["main"].ipv6:
            self.skipTest("no ::1 here")
        c = self.open("::1")
        self.expect(c, "VRFY root", VRFY_REFUSED)
        self.assertEqual(self.audit("socketmap", 1, c), [
            refused("VRFY", "root", "::1", VRFY_REFUSED)])

    def test_05_raw_requests(self):
        """The door itself: a refusal, a pass, a -bs session ("0") and bad requests."""
        s = socket.create_connection(("127.0.0.1", ENV.map_port), timeout=5)
        try:
            for request, answer in [
                    (b"27:cmdgate vrfy/127.0.0.1/root,",
                     b'38:OK "502 5.5.1 VRFY disabled by policy",'),
                    (b"28:cmdgate EXPN/127.0.0.2/staff,", b"9:NOTFOUND ,"),
                    (b"19:cmdgate VRFY/0/root,", b'38:OK "502 5.5.1 VRFY disabled by policy",'),
                    (b"11:other x/y/z,", b"16:PERM bad request,")]:
                s.sendall(request)
                self.assertEqual(s.recv(200), answer, request)
            s.sendall(b"garbage")  # the framing is lost: PERM, then the door closes
            self.assertEqual(s.recv(200), b"16:PERM bad request,")
            self.assertEqual(s.recv(200), b"")
        finally:
            s.close()
        self.assertEqual(self.audit("socketmap", 3), [
            refused("VRFY", "root", "127.0.0.1", VRFY_REFUSED),
            map_line("EXPN", "staff", "127.0.0.2", "1", "allow", "none", "none"),
            refused("VRFY", "root", "unknown", VRFY_REFUSED)])
        for reason in ('unknown map name (expected "cmdgate KEY")', "not a netstring"):
            rec = ENV.log.wait_for(lambda r: r.pid == ENV.milter.pid and reason in r.msg,
                                   self.mark)
            self.assertIsNotNone(rec, "no log line naming %r%s" % (reason, self.diag()))
            self.assertRegex(rec.msg, r"^socketmap door: 127\.0\.0\.1:\d+: bad request: ")

    def test_06_session_on_stdin(self):
        """sendmail -bs: {client_addr} is "0", audited as unknown by both doors."""
        replies = ENV.instances["main"].smtp_on_stdin(["VRFY root", "XFOO bar", "QUIT"])
        self.assertRegex(replies[0] if replies else "", r"^220 %s ESMTP Sendmail " % HOST,
                         replies)
        self.assertEqual(replies[1:], [VRFY_REFUSED, XFOO_REFUSED,
                                       "221 2.0.0 %s closing connection" % HOST])
        self.assertEqual(self.audit("socketmap", 1), [
            refused("VRFY", "root", "unknown", VRFY_REFUSED)])
        lines = self.milter_session(None, "unknown")
        self.assertEqual(lines[0], self.connect_line(replies[0], "unknown", "localhost"))
        self.assertEqual(lines[1], [
            ("event", "command"), ("door", "milter"), ("session", "S"), ("verb", "XFOO"),
            ("arg", "bar"), ("client", "unknown"), ("rule", "command"), ("action", "reject"),
            ("reply", XFOO_REFUSED), ("class", "5xx")])

    # -- the milter door, and both doors together ----------------------------

    def test_07_milter_door_unknown_verbs(self):
        """Sendmail hands the milter the whole line: XFOO under policy, XBAR not."""
        c = self.open("127.0.0.12")
        self.expect(c, "XFOO bar", XFOO_REFUSED)
        self.expect(c, "XBAR secret", '500 5.5.1 Command unrecognized: "XBAR secret"')
        self.expect(c, "QUIT", "221 2.0.0 %s closing connection" % HOST)
        self.assertEqual(self.milter_session(c, "127.0.0.12"), [
            self.connect_line(c.transcript[0][1], "127.0.0.12", "[127.0.0.12]"),
            [("event", "command"), ("door", "milter"), ("session", "S"), ("verb", "XFOO"),
             ("arg", "bar"), ("client", "127.0.0.12"), ("rule", "command"),
             ("action", "reject"), ("reply", XFOO_REFUSED), ("class", "5xx")],
            [("event", "command"), ("door", "milter"), ("session", "S"), ("verb", "XBAR"),
             ("client", "127.0.0.12"), ("rule", "default"), ("action", "allow"),
             ("reply", "none"), ("class", "none")],
            [("event", "close"), ("door", "milter"), ("session", "S"),
             ("client", "127.0.0.12"), ("commands", "2"), ("refused", "1"),
             ("2xx", "1"), ("3xx", "0"), ("4xx", "0"), ("5xx", "1")]])

    def test_08_probe_limit_shared_by_both_doors(self):
        """Refusals through either door count together; 421 closes only via the milter."""
        c = self.open("127.0.0.14")
        self.expect(c, "VRFY a", VRFY_REFUSED)
        self.expect(c, "XFOO", XFOO_REFUSED)
        self.expect(c, "EXPN b", EXPN_REFUSED)
        self.expect(c, "VRFY c", LIMIT_REPLY)
        self.expect(c, "NOOP", "250 2.0.0 OK")  # Sendmail keeps a ruleset's 421 session
        self.expect(c, "XFOO", LIMIT_REPLY)
        self.assertTrue(c.wait_closed(5), "Sendmail did not close after the milter's 421"
                        + self.diag(c))
        self.assertEqual(self.audit("socketmap", 3, c), [
            refused("VRFY", "a", "127.0.0.14", VRFY_REFUSED),
            refused("EXPN", "b", "127.0.0.14", EXPN_REFUSED),
            map_line("VRFY", "c", "127.0.0.14", "limit", "disconnect", LIMIT_REPLY, "4xx")])
        lines = self.milter_session(c, "127.0.0.14")
        self.assertEqual(lines[1:], [
            [("event", "command"), ("door", "milter"), ("session", "S"), ("verb", "XFOO"),
             ("client", "127.0.0.14"), ("rule", "command"), ("action", "reject"),
             ("reply", XFOO_REFUSED), ("class", "5xx")],
            [("event", "command"), ("door", "milter"), ("session", "S"), ("verb", "XFOO"),
             ("client", "127.0.0.14"), ("rule", "limit"), ("action", "disconnect"),
             ("reply", LIMIT_REPLY), ("class", "4xx")],
            [("event", "close"), ("door", "milter"), ("session", "S"),
             ("client", "127.0.0.14"), ("commands", "2"), ("refused", "2"),
             ("2xx", "1"), ("3xx", "0"), ("4xx", "1"), ("5xx", "1")]])

    # -- a daemon that is down, slow or wrong ---------------------------------

    def test_09_socketmap_down_fails_closed(self):
        """Nobody on the socketmap: 451, and still 451 in that session once it is back."""
        ENV.fake.stop()
        c = self.open("127.0.0.15", "map_fault")
        self.expect(c, "VRFY root", MAP_DOWN)
        self.expect(c, "EXPN root", MAP_DOWN)
        ENV.fake.start("perm")
        self.expect(c, "VRFY root", MAP_DOWN)  # Sendmail does not retry in this session
        d = self.open("127.0.0.15", "map_fault")
        self.expect(d, "VRFY root", ROOT_OK)  # PERM: Sendmail takes it as not found

    def test_10_socketmap_slow(self):
        """A daemon slower than CMDGATE_SOCKETMAP_TIMEOUT (1 s here): Sendmail's own 451."""
        ENV.fake.start("slow")
        c = self.open("127.0.0.16", "map_fault")
        self.expect(c, "VRFY root", "451 4.3.0 socket_map_lookup(cmdgate): read timeout: "
                                    "Resource temporarily unavailable")

    def test_11_daemon_down_fails_closed(self):
        """The shipped fragment, nobody on either socket: F=T refuses, temporarily."""
        c = self.open("127.0.0.17", "down_closed")
        self.expect(c, "VRFY root", "550 5.7.1 Please try again later")
        self.expect(c, "MAIL FROM:<a@%s>" % HOST, "451 4.3.2 Please try again later")

    def test_12_daemon_down_fail_open(self):
        """CMDGATE_FAIL_OPEN, nobody on either socket: Sendmail answers as if alone."""
        c = self.open("127.0.0.18", "down_open")
        self.expect(c, "VRFY root", ROOT_OK)
        self.expect(c, "EXPN root", ROOT_OK)
        self.expect(c, "XFOO bar", '500 5.5.1 Command unrecognized: "XFOO bar"')
        self.expect(c, "MAIL FROM:<a@%s>" % HOST, "250 2.1.0 <a@%s>... Sender ok" % HOST)

    def test_13_hostile_arguments(self):
        """VRFY arguments with hostile bytes: the policy's reply intact, arg= escaped
        exactly as Sendmail handed it over (measured: a NUL ends the line, a bare
        CR and 0xff split words, 0xff itself arrives as 0x7f, quotes and
        backslashes are removed, and a token over 256 bytes gets Sendmail's
        own 553 5.1.0 "prescan: token too long" without a lookup)."""
        cases = [  # argument as sent, arg= as the audit line writes it
            (b"%n%s%x", "%n%s%x"),
            (b"r\xe2\x80\xaeoot", h.audit_quoted(b"r\xe2\x80\xaeoot")),
            (b"\xc3\xa9t\xc3\xa9", h.audit_quoted(b"\xc3\xa9t\xc3\xa9")),
            (b"bad\xff\xfeutf", h.audit_quoted(b"bad \x7f\xfe utf")),
            (b"a\x1b[31mb", h.audit_quoted(b"a\x1b[31mb")),
            (b"a\x00b", "a"),
            (b"a\rb", '"a b"'),
            (b'q"u\\o', "quo"),
            (b"x/y/z", "x/y/z"),
            (b"L" * 255, "L" * 255),
        ]
        for i, (arg, field) in enumerate(cases):
            client = "127.0.0.%d" % (60 + i)  # limits.probes counts per address
            c = self.open(client)
            mark = ENV.log.mark()
            self.expect(c, b"VRFY " + arg, VRFY_REFUSED)
            rec = ENV.log.wait_for(lambda r: r.pid == ENV.milter.pid
                                   and "door=socketmap" in r.msg, mark)
            self.assertIsNotNone(rec, "no audit line for %r%s" % (arg, self.diag(c)))
            self.assertEqual(h.audit_raw_fields(rec.msg), {
                "event": "command", "door": "socketmap", "verb": "VRFY", "arg": field,
                "client": client, "rule": "command", "action": "reject",
                "reply": '"%s"' % VRFY_REFUSED, "class": "5xx"}, rec.msg + self.diag(c))
        c = self.open("127.0.0.70")
        mark = ENV.log.mark()
        got = c.command(b"VRFY " + b"L" * 257)
        self.assertRegex(got, r"^553 5\.1\.0 L+\.\.\.L+\.\.\. prescan: token too long$", self.diag(c))
        self.assertIsNone(ENV.log.wait_for(lambda r: r.pid == ENV.milter.pid
                                           and "door=socketmap" in r.msg, mark, timeout=1))

    def test_99_daemon_survived(self):
        """The daemon is still running after all of the above."""
        self.assertTrue(ENV.milter.running(), ENV.milter.output())
