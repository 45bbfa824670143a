"""Integration harness for milter-cmdgate (python3 standard library only).

Four pieces, each usable on its own:

* PostfixInstance - a private Postfix (own main.cf/master.cf, queue and data
  directory in a temporary directory), started with `postfix -c DIR start`
  and stopped with `postfix -c DIR stop`.  It never reads or writes the
  system's /etc/postfix configuration nor talks to a system Postfix.
* MilterProcess   - the milter-cmdgate binary run in the foreground on an
  inet socket on 127.0.0.1, with its PID, signals and stop.
* MailLog         - reads the syslog file (CMDGATE_MAIL_LOG, default
  /var/log/mail.log) from the position it had when the harness started;
  parse_audit() parses the milter's `PREFIX: key=value ...` audit lines.
* SMTPClient      - a raw-socket SMTP client (no smtplib: arbitrary bytes),
  with a selectable source address, full multi-line replies and detection
  of a connection closed by the server.

Network traffic stays on the loopback: the Postfix instance listens on
127.0.0.1 and ::1 only, and reverse DNS of clients is switched off
(smtpd_peername_lookup = no) so that no resolver query leaves the machine;
see PostfixInstance for the one listener that resolves 127.0.0.1 through
/etc/hosts.
"""

import atexit
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import syslog
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

MTA_HOSTNAME = "cmdgate-test.example"
POSTFIX_SYSLOG_NAME = "postfix-cmdgate-test"
MILTER_IDENT = "milter-cmdgate"
DEFAULT_MAIL_LOG = "/var/log/mail.log"
SBIN_PATH = "/usr/sbin:/sbin:/usr/local/sbin"


class HarnessError(Exception):
    """The test environment could not be set up or misbehaved."""


class ConnectionClosed(HarnessError):
    """The SMTP server closed the connection."""


class AuditParseError(ValueError):
    """An audit line does not follow the key=value format."""


# ---------------------------------------------------------------------------
# Environment checks


def find_program(name):
    """Path of NAME on PATH or in the sbin directories, or None."""
    path = os.environ.get("PATH", "") + ":" + SBIN_PATH
    return shutil.which(name, path=path)


def process_running(comm):
    """True if a process whose /proc/PID/comm is COMM exists."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % entry) as f:
                if f.read().strip() == comm:
                    return True
        except OSError:
            continue
    return False


def postfix_program(root=None):
    """The postfix command: the host's, or /usr/sbin/postfix of the Debian
    root ROOT (the path as seen inside it); None when it is not there."""
    if root is None:
        return find_program("postfix")
    ok = os.access(os.path.join(root, "usr/sbin/postfix"), os.X_OK)
    return "/usr/sbin/postfix" if ok else None


def missing_prerequisites(root=None):
    """Reasons (strings) why the integration test cannot run here at all.

    ROOT: the Debian root whose Postfix is under test, else the host's.
    """
    missing = []
    if os.geteuid() != 0:
        missing.append("not running as root (a private Postfix instance needs root)")
    if postfix_program(root) is None:
        missing.append("no postfix in %s (see tests/integration/trixie-root.sh)" % root if root
                       else "postfix is not installed (apt-get install postfix)")
    if find_program("rsyslogd") is None:
        missing.append("rsyslogd is not installed (apt-get install rsyslog)")
    return missing


def mail_log_path():
    return os.environ.get("CMDGATE_MAIL_LOG") or DEFAULT_MAIL_LOG


def check_syslog(log=None, timeout=5.0):
    """Make sure mail-facility syslog messages reach the log file.

    Sends a probe message with facility mail through /dev/log and waits for
    it in the log file.  Raises HarnessError starting with "start rsyslogd:"
    when that path does not work.
    """
    path = mail_log_path()
    if not os.path.exists("/dev/log"):
        raise HarnessError(
            "start rsyslogd: /dev/log does not exist, so nothing that the milter "
            "logs is recorded (run `rsyslogd` as root)")
    if not process_running("rsyslogd"):
        raise HarnessError(
            "start rsyslogd: no rsyslogd process is running (run `rsyslogd` as root); "
            "the test reads the milter's audit lines from %s" % path)
    log = log or MailLog(path)
    token = "cmdgate-harness-probe-%d-%d" % (os.getpid(), int(time.time() * 1000))
    syslog.openlog("cmdgate-harness", syslog.LOG_PID, syslog.LOG_MAIL)
    syslog.syslog(syslog.LOG_INFO, token)
    syslog.closelog()
    if log.wait_for(lambda r: token in r.msg, since=0, timeout=timeout) is None:
        raise HarnessError(
            "start rsyslogd: a probe message with facility mail did not appear in %s "
            "within %.0f s (set CMDGATE_MAIL_LOG to the file your syslog daemon "
            "writes mail.* to)" % (path, timeout))
    return log


# ---------------------------------------------------------------------------
# Ports


def ipv6_loopback_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_port(also_ipv6=False):
    """A TCP port free on 127.0.0.1 (and on ::1 when ALSO_IPV6)."""
    for _ in range(50):
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s4.bind(("127.0.0.1", 0))
            port = s4.getsockname()[1]
            if not also_ipv6:
                return port
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            try:
                s6.bind(("::1", port))
                return port
            except OSError:
                continue
            finally:
                s6.close()
        finally:
            s4.close()
    raise HarnessError("could not find a free TCP port on the loopback")


def _listening_ports():
    """Set of (family, address-hex, port) for TCP sockets in LISTEN state."""
    found = set()
    for family, name in ((4, "/proc/net/tcp"), (6, "/proc/net/tcp6")):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) < 4 or fields[3] != "0A":
                        continue
                    addr, port = fields[1].split(":")
                    found.add((family, addr, int(port, 16)))
        except (OSError, StopIteration):
            continue
    return found


def port_listening(host, port):
    """True if something listens on HOST:PORT, checked without connecting.

    Connecting would start an SMTP or milter session and leave traces in
    the log; /proc/net/tcp{,6} is read instead.  Falls back to a connect
    when /proc gives nothing.
    """
    listening = _listening_ports()
    if listening:
        family = 6 if ":" in host else 4
        packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, host)
        # /proc shows each 32-bit word in host byte order.
        words = [packed[i:i + 4] for i in range(0, len(packed), 4)]
        hexaddr = "".join("%08X" % int.from_bytes(w, "little") for w in words)
        any_addr = "0" * len(hexaddr)
        return ((family, hexaddr, port) in listening
                or (family, any_addr, port) in listening)
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Cleanup of everything started, also when a test run is interrupted

_live = []


def share_per_module(namespace, name, start):
    """Gives a test module (NAMESPACE: its globals()) setUpModule,
    tearDownModule and shutdown(), which runner.py also calls after an
    interruption: the global NAME holds START()'s result while the module's
    tests run and is stopped once at the end.  START cleans up after itself
    when it fails."""
    def set_up():
        namespace[name] = start()

    def shut_down():
        value, namespace[name] = namespace.get(name), None
        if value is not None:
            value.stop()

    namespace.update(setUpModule=set_up, tearDownModule=shut_down, shutdown=shut_down)


class SessionTestCase(unittest.TestCase):
    """Base of the tests that open SMTP sessions in a module's shared
    environment: setUp checks the milter runs and marks the mail log,
    tearDown closes self.clients, diag() formats a failure message.
    A subclass defines environment() and may set log_idents (the MTA's
    syslog names shown beside the milter's lines) and milter_must_run."""
    maxDiff = None
    log_idents = (POSTFIX_SYSLOG_NAME,)
    milter_must_run = True

    def environment(self):
        """(MailLog, MilterProcess) of the running environment, or None."""
        raise NotImplementedError

    def setUp(self):
        env = self.environment()
        if env is None:
            self.fail("the test environment is not running")
        self.log, self.milter = env
        if self.milter_must_run and not self.milter.running():
            self.fail("the milter is not running (exit status %s):\n%s"
                      % (self.milter.proc.returncode, self.milter.output()))
        self.mark = self.log.mark()
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def expect(self, client, command, expected):
        """Send COMMAND and assert the final reply line equals EXPECTED."""
        try:
            got = client.command(command)
        except HarnessError as e:
            self.fail("%r: %s%s" % (command, e, self.diag(client)))
        self.assertEqual(got, expected, "reply to %r%s" % (command, self.diag(client)))
        return got

    def diag(self, client=None):
        """Transcript and log excerpt for a failure message."""
        log, milter = self.environment()
        text = ""
        if client is not None:
            text += "\n--- SMTP transcript ---\n" + client.format_transcript()
        text += ("\n--- log since the test began (milter pid %d, %s) ---\n%s"
                 % (milter.pid, " ".join(self.log_idents),
                    log.excerpt(self.mark, pids={milter.pid}, idents=list(self.log_idents))))
        if not milter.running():
            text += ("\n--- the milter exited with status %s; its output ---\n%s"
                     % (milter.proc.returncode, milter.output()))
        return text


def _cleanup_all():
    while _live:
        obj = _live.pop()
        try:
            obj.stop()
        except Exception:
            pass


atexit.register(_cleanup_all)

OWNER_FILE = ".cmdgate-harness-owner"


def mark_owned(directory):
    """Record that this process owns DIRECTORY (see reap_stale)."""
    with open(os.path.join(directory, OWNER_FILE), "w") as f:
        f.write("%d\n" % os.getpid())


def _owner_alive(directory):
    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            return _pid_alive(int(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        return None  # not ours, or not yet written


def reap_stale(tmpdir=None, root=None):
    """Stop and remove what an earlier, killed harness run left behind.

    Only directories this harness created (cmdgate-postfix-*, cmdgate-it-*,
    with an owner file naming a process that no longer exists) are touched,
    and only the processes recorded in them: the Postfix master of that
    queue directory, and a milter whose command line names that directory.
    With ROOT, the Postfix instances left in ROOT/tmp.
    """
    tmpdir = os.path.join(root, "tmp") if root else tmpdir or tempfile.gettempdir()
    try:
        names = os.listdir(tmpdir)
    except OSError:
        return
    for name in names:
        path = os.path.join(tmpdir, name)
        if not (name.startswith("cmdgate-postfix-") or name.startswith("cmdgate-it-")):
            continue
        if _owner_alive(path) is not False:
            continue
        if name.startswith("cmdgate-postfix-"):
            inst = PostfixInstance.__new__(PostfixInstance)
            inst.dir, inst.started, inst.root = path, False, root
            inst.postfix = postfix_program(root)
            try:
                inst.stop()
            except Exception:
                shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            with open(os.path.join(path, "milter-cmdgate.pid")) as f:
                pid = int(f.read().split()[0])
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                mine = path.encode() in f.read()
        except (OSError, ValueError, IndexError):
            mine = False
        if mine:
            try:
                os.kill(pid, signal.SIGTERM)
                if not wait_until(lambda: not _pid_alive(pid), 5):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------
# Private Postfix instance

MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
"""


def etc_hosts_names_localhost(path="/etc/hosts"):
    """True if /etc/hosts maps 127.0.0.1 to `localhost` (no DNS needed)."""
    try:
        with open(path) as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if fields and fields[0] == "127.0.0.1":
                    # getnameinfo() answers with the first name of the first line
                    return fields[1] == "localhost" if len(fields) > 1 else False
    except OSError:
        pass
    return False


class PostfixInstance:
    """A private Postfix 3.x instance in a temporary directory.

    Listeners (all smtpd, no chroot):
      port       on 127.0.0.1 and [::1] - client hostname lookup off, the
                 client name is "unknown" (no resolver traffic for
                 127.0.0.2, ::1 and the like, which /etc/hosts does not name)
      named_port on 127.0.0.1 only, with smtpd_peername_lookup = yes; use it
                 only from source 127.0.0.1, which /etc/hosts resolves to
                 localhost (SMTPClient refuses other sources), or None when
                 /etc/hosts does not name 127.0.0.1 "localhost".
    Accepted mail for cmdgate-test.example / localhost is discarded.

    ROOT: a Debian root with its own postfix package (trixie-root.sh); the
    instance then lives in ROOT/tmp and runs chrooted there, in a private
    mount namespace where the host's /dev/log is bound to ROOT/dev/log, so
    nothing stays mounted on the host.  None: the host's Postfix.
    MILTER_DEFAULT_ACTION None leaves Postfix's own default.
    LISTENERS: {name: {parameter: value}}, one more smtpd on 127.0.0.1 each,
    with those main.cf overrides (-o); its port is listener_ports[name].
    """

    def __init__(self, milter_port=None, milter_default_action="tempfail",
                 extra_main=None, ipv6=None, root=None, listeners=None):
        self.milter_port = milter_port
        self.milter_default_action = milter_default_action
        self.extra_main = dict(extra_main or {})
        self.ipv6 = ipv6_loopback_available() if ipv6 is None else ipv6
        self.root = os.path.abspath(root) if root else None
        self.listeners = dict(listeners or {})
        self.listener_ports = {}
        self.dir = None
        self.port = None
        self.named_port = None
        self.started = False
        self.postfix = postfix_program(self.root)
        if self.postfix is None:
            raise HarnessError("postfix is not installed%s"
                               % (" in %s" % self.root if self.root else ""))

    def inside(self, path):
        """PATH as the (possibly chrooted) Postfix sees it."""
        if self.root is None:
            return path
        return "/" + os.path.relpath(path, self.root)

    @property
    def conf_dir(self):
        return os.path.join(self.dir, "conf")

    @property
    def queue_dir(self):
        return os.path.join(self.dir, "queue")

    def main_cf(self):
        lines = [
            "# private instance written by tests/integration/harness.py",
            "compatibility_level = 3.6",
            "queue_directory = %s" % self.inside(self.queue_dir),
            "data_directory = %s" % self.inside(os.path.join(self.dir, "data")),
            "myhostname = %s" % MTA_HOSTNAME,
            "mydomain = %s" % MTA_HOSTNAME,
            "myorigin = $myhostname",
            "mydestination = $myhostname, localhost",
            "inet_interfaces = %s" % ("127.0.0.1, [::1]" if self.ipv6 else "127.0.0.1"),
            "inet_protocols = %s" % ("ipv4, ipv6" if self.ipv6 else "ipv4"),
            "mynetworks = 127.0.0.0/8%s" % (" [::1]/128" if self.ipv6 else ""),
            "smtpd_banner = $myhostname ESMTP $mail_name $mail_version",
            "syslog_name = %s" % POSTFIX_SYSLOG_NAME,
            # everything accepted is thrown away; nothing leaves the machine
            "local_transport = discard",
            "virtual_transport = discard",
            "relay_transport = discard",
            "default_transport = discard",
            "alias_maps =",
            "alias_database =",
            "local_recipient_maps =",
            "biff = no",
            # no resolver traffic: /etc/hosts does not name 127.0.0.2 or ::1
            "smtpd_peername_lookup = no",
            "smtp_dns_support_level = disabled",
            # Postfix's own error throttling must not disturb the test
            "smtpd_error_sleep_time = 0",
            "smtpd_soft_error_limit = 100",
            "smtpd_hard_error_limit = 200",
            "milter_connect_macros = j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}",
        ]
        if self.milter_default_action is not None:
            lines.append("milter_default_action = %s" % self.milter_default_action)
        if self.milter_port is not None:
            lines.append("smtpd_milters = inet:127.0.0.1:%d" % self.milter_port)
        for key, value in self.extra_main.items():
            lines.append("%s = %s" % (key, value))
        return "\n".join(lines) + "\n"

    def master_cf(self):
        lines = ["127.0.0.1:%d inet n - n - - smtpd" % self.port]
        if self.ipv6:
            lines.append("[::1]:%d inet n - n - - smtpd" % self.port)
        if self.named_port is not None:
            lines.append("127.0.0.1:%d inet n - n - - smtpd -o smtpd_peername_lookup=yes"
                         % self.named_port)
        for name, overrides in self.listeners.items():
            lines.append("127.0.0.1:%d inet n - n - - smtpd" % self.listener_ports[name]
                         + "".join(" -o %s=%s" % kv for kv in overrides.items()))
        return "\n".join(lines) + "\n" + MASTER_SERVICES

    def _command(self, program, *args):
        if self.root is None:
            return [program] + list(args)
        # a mount namespace of its own: the bind of /dev/log vanishes with
        # the last Postfix process, whatever way the test run ends
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind /dev/log "$1/dev/log" && exec chroot "$@"',
                "sh", self.root, program] + list(args)

    def _run(self, *args, timeout=60):
        cmd = self._command(self.postfix, "-c", self.inside(self.conf_dir), *args)
        env = dict(os.environ)
        env.pop("MAIL_CONFIG", None)
        env["PATH"] = env.get("PATH", "") + ":" + SBIN_PATH
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, env=env)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def start(self):
        if os.geteuid() != 0:
            raise HarnessError("a private Postfix instance must be started as root")
        _live.append(self)
        try:
            self.dir = tempfile.mkdtemp(prefix="cmdgate-postfix-",
                                        dir=os.path.join(self.root, "tmp") if self.root else None)
            mark_owned(self.dir)
            # the postfix user must reach queue and data directory
            os.chmod(self.dir, 0o755)
            os.mkdir(self.conf_dir, 0o755)
            os.mkdir(self.queue_dir, 0o755)
            # data_directory is left for `postfix check` to create: it must
            # belong to the postfix user (master.lock, caches)
            self.port = pick_port(also_ipv6=self.ipv6)
            if etc_hosts_names_localhost(os.path.join(self.root or "/", "etc/hosts")):
                self.named_port = pick_port()
            for name in self.listeners:
                self.listener_ports[name] = pick_port()
            with open(os.path.join(self.conf_dir, "main.cf"), "w") as f:
                f.write(self.main_cf())
            with open(os.path.join(self.conf_dir, "master.cf"), "w") as f:
                f.write(self.master_cf())
            rc, out = self._run("check")
            if rc != 0:
                raise HarnessError("postfix -c %s check failed (%d):\n%s"
                                   % (self.conf_dir, rc, out))
            rc, out = self._run("start")
            if rc != 0:
                raise HarnessError("postfix -c %s start failed (%d):\n%s\n"
                                   "(see %s, lines of %s)"
                                   % (self.conf_dir, rc, out, mail_log_path(),
                                      POSTFIX_SYSLOG_NAME))
            self.started = True
            wanted = [("127.0.0.1", self.port)]
            if self.ipv6:
                wanted.append(("::1", self.port))
            if self.named_port is not None:
                wanted.append(("127.0.0.1", self.named_port))
            wanted += [("127.0.0.1", port) for port in self.listener_ports.values()]
            for host, port in wanted:
                if not wait_until(lambda: port_listening(host, port), 10):
                    raise HarnessError("Postfix does not listen on [%s]:%d" % (host, port))
        except BaseException:
            self.stop()
            raise
        return self

    def mail_version(self):
        """mail_version of this Postfix (e.g. 3.7.11)."""
        p = subprocess.run(self._command(os.path.join(os.path.dirname(self.postfix), "postconf"),
                                         "-dh", "mail_version"),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise HarnessError("postconf -dh mail_version failed: %s"
                               % p.stderr.decode("utf-8", "replace"))
        return p.stdout.decode().strip()

    def master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _master_alive(self, pid):
        """PID is alive and is the master of this instance (not a reused PID)."""
        if not _pid_alive(pid):
            return False
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() != "master":
                    return False
            return os.path.realpath(os.readlink("/proc/%d/cwd" % pid)) == \
                os.path.realpath(self.queue_dir)
        except OSError:
            return False

    def stop(self):
        if self in _live:
            _live.remove(self)
        if self.dir is None:
            return
        try:
            pid = self.master_pid()
            if self.started or pid is not None:
                try:
                    if self.postfix is not None:
                        self._run("stop", timeout=30)
                except (OSError, subprocess.SubprocessError):
                    pass
                if pid is not None and not wait_until(lambda: not self._master_alive(pid), 10):
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    wait_until(lambda: not self._master_alive(pid), 5)
            self.started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is as good as dead
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------------
# The milter


def milter_binary():
    """CMDGATE_BIN, else $builddir/milter/milter-cmdgate, else ../../milter/."""
    explicit = os.environ.get("CMDGATE_BIN")
    if explicit:
        return os.path.abspath(explicit)
    builddir = os.environ.get("builddir")
    if builddir:
        return os.path.abspath(os.path.join(builddir, "milter", "milter-cmdgate"))
    return os.path.abspath(os.path.join(HERE, "..", "..", "milter", "milter-cmdgate"))


class MilterProcess:
    """milter-cmdgate -f -c POLICY -p inet:PORT@127.0.0.1, in the foreground.

    SOCKET (a "unix:/path" spec) replaces the inet socket, EXTRA_ARGS are
    added to the command line (e.g. ["-u", "nobody"]), and WRAPPER runs
    it under another program that execs it (valgrind, prlimit); the
    default wrapper is $CMDGATE_WRAPPER, split like a shell would.
    """

    def __init__(self, policy_path, port=None, binary=None, workdir=None,
                 socket=None, extra_args=(), wrapper=None):
        self.binary = binary or milter_binary()
        self.policy_path = policy_path
        self.unix_path = socket[len("unix:"):] if socket else None
        self.port = None if socket else (port or pick_port())
        self.extra_args = list(extra_args)
        if wrapper is None:
            wrapper = shlex.split(os.environ.get("CMDGATE_WRAPPER", ""))
        self.wrapper = list(wrapper)
        self.workdir = workdir or os.path.dirname(os.path.abspath(policy_path))
        self.output_path = os.path.join(self.workdir, "milter-cmdgate.out")
        self.proc = None
        self.pid = None

    @property
    def socket_spec(self):
        if self.unix_path:
            return "unix:" + self.unix_path
        return "inet:%d@127.0.0.1" % self.port

    def argv(self):
        return self.wrapper + [self.binary, "-f", "-c", self.policy_path,
                               "-p", self.socket_spec] + self.extra_args

    def listening(self):
        if self.unix_path:
            return unix_listening(self.unix_path)
        return port_listening("127.0.0.1", self.port)

    def start(self, timeout=10.0):
        if not os.access(self.binary, os.X_OK):
            raise HarnessError("milter binary %s does not exist or is not executable "
                               "(build it, or set CMDGATE_BIN or builddir)" % self.binary)
        _live.append(self)
        out = open(self.output_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        self.pid = self.proc.pid
        with open(os.path.join(self.workdir, "milter-cmdgate.pid"), "w") as f:
            f.write("%d\n" % self.pid)
        deadline = time.monotonic() + timeout
        while not self.listening():
            if self.proc.poll() is not None:
                raise HarnessError("%s exited with status %s before listening:\n%s"
                                   % (" ".join(self.argv()), self.proc.returncode, self.output()))
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError("%s does not listen on %s after %.0f s:\n%s"
                                   % (" ".join(self.argv()), self.socket_spec, timeout,
                                      self.output()))
            time.sleep(0.05)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if not self.running():
            raise HarnessError("milter is not running (exit status %s):\n%s"
                               % (self.proc.returncode if self.proc else None, self.output()))
        self.proc.send_signal(sig)

    def reload(self):
        """SIGUSR1: re-read the policy file."""
        self.send_signal(signal.SIGUSR1)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after TIMEOUT. Returns the exit status."""
        if self in _live:
            _live.remove(self)
        if self.proc is None:
            return None
        if self not in _stopped:
            _stopped.append(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def output(self):
        try:
            with open(self.output_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def problems(self):
        """Sanitizer or valgrind reports in its output (after stop())."""
        text = self.output()
        found = [line for line in text.splitlines() if _PROBLEM_RE.search(line)]
        if found:
            return ["%s (pid %s): %s" % (self.binary, self.pid, line) for line in found]
        return []


# AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer, valgrind memcheck
_PROBLEM_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: |"
                         r"==\d+== ERROR SUMMARY: [1-9]|==\d+==\s+definitely lost: [1-9]")
_stopped = []


def milter_problems():
    """Sanitizer/valgrind reports of every milter stopped so far, as lines."""
    found = []
    for m in _stopped:
        found.extend(m.problems())
    return found


def unix_listening(path):
    """True if a unix-domain socket at PATH is listening (from /proc/net/unix)."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                # Flags 00010000: __SO_ACCEPTCON, a listening socket
                if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
                    return True
    except (OSError, StopIteration, ValueError):
        pass
    return False


# ---------------------------------------------------------------------------
# Syslog file reader

_SYSLOG_RE = re.compile(r"^(?P<head>.*?)\s(?P<ident>[^\s\[\]]+)\[(?P<pid>\d+)\]: (?P<msg>.*)$")


class LogRecord:
    __slots__ = ("raw", "ident", "pid", "msg")

    def __init__(self, raw):
        self.raw = raw
        m = _SYSLOG_RE.match(raw)
        if m:
            self.ident, self.pid, self.msg = m.group("ident"), int(m.group("pid")), m.group("msg")
        else:
            self.ident, self.pid, self.msg = None, None, raw

    def __repr__(self):
        return "LogRecord(%r)" % self.raw


class MailLog:
    """Lines appended to the mail log since this object was created."""

    def __init__(self, path=None):
        self.path = path or mail_log_path()
        try:
            self.offset = os.path.getsize(self.path)
        except OSError:
            self.offset = 0
        self.records = []
        self._partial = b""

    def poll(self):
        """Read what was appended; returns the number of new records."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return 0
        if size < self.offset:  # rotated or truncated: start over
            self.offset = 0
            self._partial = b""
        if size == self.offset:
            return 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.records.append(LogRecord(line.rstrip(b"\r").decode("utf-8", "surrogateescape")))
        return len(lines)

    def mark(self):
        """Position to pass as `since` to wait_for() / select()."""
        self.poll()
        return len(self.records)

    def select(self, predicate, since=0):
        self.poll()
        return [r for r in self.records[since:] if predicate(r)]

    def wait_for(self, predicate, since=0, timeout=5.0):
        """First record from SINCE on that satisfies PREDICATE, or None."""
        deadline = time.monotonic() + timeout
        checked = since
        while True:
            self.poll()
            for i in range(checked, len(self.records)):
                if predicate(self.records[i]):
                    return self.records[i]
            checked = max(checked, len(self.records))
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def excerpt(self, since=0, pids=None, idents=None, limit=80):
        """Text of the records from SINCE on, for failure messages."""
        self.poll()
        out = []
        for r in self.records[since:]:
            if pids is not None or idents is not None:
                ok = (pids is not None and r.pid in pids) or \
                     (idents is not None and r.ident is not None
                      and any(r.ident.startswith(i) for i in idents))
                if not ok:
                    continue
            out.append(r.raw)
        return "\n".join(out[-limit:])


# ---------------------------------------------------------------------------
# Audit lines: "PREFIX: key=value key="quoted \"value\"" ..."

_KEY_RE = re.compile(r"[A-Za-z0-9_.-]+")
_SIMPLE_ESCAPES = {'"': 0x22, "\\": 0x5C, "n": 0x0A, "r": 0x0D, "t": 0x09}


class AuditLine:
    def __init__(self, prefix, items, raw=""):
        self.prefix = prefix
        self.items = items  # list of (key, value) in line order
        self.raw = raw

    def keys(self):
        return [k for k, _ in self.items]

    def dict(self):
        return dict(self.items)

    def get(self, key, default=None):
        for k, v in self.items:
            if k == key:
                return v
        return default

    def __getitem__(self, key):
        for k, v in self.items:
            if k == key:
                return v
        raise KeyError(key)

    def __contains__(self, key):
        return any(k == key for k, _ in self.items)

    def __repr__(self):
        return "AuditLine(%r, %r)" % (self.prefix, self.items)


def unquote_value(text):
    """Decode the inside of a double-quoted value (C escapes)."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                raise AuditParseError("dangling backslash in %r" % text)
            e = text[i + 1]
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
                i += 2
                continue
            if e == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 2:i + 4]):
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            raise AuditParseError("unknown escape \\%s in %r" % (e, text))
        if not (" " <= c <= "~"):
            raise AuditParseError("unescaped character %r in quoted value %r" % (c, text))
        out.append(ord(c))
        i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_audit(msg):
    """Parse `PREFIX: key=value ...` into an AuditLine; AuditParseError if malformed."""
    m = re.match(r"([^\s:]+): (.*)\Z", msg, re.S)
    if not m:
        raise AuditParseError("no `PREFIX: ` in %r" % msg)
    prefix, rest = m.group(1), m.group(2)
    items = []
    i, n = 0, len(rest)
    while i < n:
        if rest[i] == " ":
            i += 1
            continue
        km = _KEY_RE.match(rest, i)
        if not km or km.end() >= n or rest[km.end()] != "=":
            raise AuditParseError("expected key= at column %d of %r" % (i, rest))
        key = km.group(0)
        i = km.end() + 1
        if i < n and rest[i] == '"':
            j = i + 1
            while j < n and rest[j] != '"':
                j += 2 if rest[j] == "\\" else 1
            if j >= n:
                raise AuditParseError("unterminated quoted value of %s in %r" % (key, rest))
            value = unquote_value(rest[i + 1:j])
            i = j + 1
            if i < n and rest[i] != " ":
                raise AuditParseError("garbage after quoted value of %s in %r" % (key, rest))
        else:
            j = rest.find(" ", i)
            if j < 0:
                j = n
            value = rest[i:j]
            if value == "":
                raise AuditParseError("empty unquoted value of %s in %r" % (key, rest))
            for c in value:
                if not ("!" <= c <= "~") or c in '"=\\':
                    raise AuditParseError("character %r must be quoted in value of %s in %r"
                                          % (c, key, rest))
            i = j
        items.append((key, value))
    return AuditLine(prefix, items, msg)


def audit_quoted(raw):
    """The escaped audit form of RAW bytes, as audit_escape writes it (quoted)."""
    out = ""
    for b in raw:
        c = chr(b)
        if c == '"':
            out += '\\"'
        elif c == "\\":
            out += "\\\\"
        elif c in "\n\r\t":
            out += {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c]
        elif b < 0x20 or b >= 0x7F:
            out += "\\x%02x" % b
        else:
            out += c
    return '"%s"' % out


def audit_raw_fields(raw):
    """{key: value as written} of an audit line, quotes and escapes kept."""
    out = {}
    rest = raw.split(": ", 1)[1]
    i = 0
    while i < len(rest):
        eq = rest.index("=", i)
        key = rest[i:eq]
        j = eq + 1
        if rest[j] == '"':
            j += 1
            while rest[j] != '"':
                j += 2 if rest[j] == "\\" else 1
            j += 1
        else:
            j = rest.find(" ", j)
            j = len(rest) if j < 0 else j
        out.setdefault(key, rest[eq + 1:j])
        i = j + 1
    return out


def is_audit_message(msg):
    return re.match(r"[^\s:]+: event=", msg) is not None


# ---------------------------------------------------------------------------
# SMTP client on raw sockets

_REPLY_RE = re.compile(rb"^(\d{3})([ -]|$)")


class SMTPClient:
    """Line-oriented SMTP client that returns replies exactly as received."""

    def __init__(self, host="127.0.0.1", port=25, source=None, timeout=10.0):
        self.host = host
        self.port = port
        self.source = source
        self.timeout = timeout
        self.sock = None
        self._buf = b""
        self.transcript = []  # ("C"|"S", str)
        self.last_reply = []  # all lines of the last reply, without CRLF

    def connect(self):
        """Connect and return the final line of the greeting."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        if self.source:
            self.sock.bind((self.source, 0))
        self.sock.connect((self.host, self.port))
        return self.read_reply()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.transcript.append(("C", data.decode("utf-8", "backslashreplace")))
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed("send failed: %s" % e)

    def send_line(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogateescape")
        self.send_raw(line + b"\r\n")

    def _read_line(self):
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except socket.timeout:
                raise HarnessError("no complete reply from %s:%d within %.0f s; got %r so far"
                                   % (self.host, self.port, self.timeout, self._buf))
            if not chunk:
                raise ConnectionClosed("connection closed by server%s"
                                       % (" after %r" % self._buf if self._buf else ""))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def read_reply(self):
        """Read a complete (multi-line) reply; return its final line."""
        lines = []
        while True:
            raw = self._read_line()
            text = raw.decode("utf-8", "surrogateescape")
            lines.append(text)
            self.transcript.append(("S", text))
            m = _REPLY_RE.match(raw)
            if not m:
                raise HarnessError("malformed SMTP reply line %r" % raw)
            if m.group(2) != b"-":
                break
        self.last_reply = lines
        return lines[-1]

    def command(self, line):
        """Send LINE + CRLF and return the final line of the reply."""
        self.send_line(line)
        return self.read_reply()

    def send_message(self, body):
        """After a 354: send BODY (dot-stuffed here) and the final dot."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        lines = body.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        data = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
        self.send_raw(data + b".\r\n")
        return self.read_reply()

    def wait_closed(self, timeout=5.0):
        """True once the server has closed the connection (EOF or reset)."""
        if self._buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)
        if data:
            self._buf += data
            return False
        return True

    def format_transcript(self):
        return "\n".join("%s: %s" % (who, text.rstrip("\r\n")) for who, text in self.transcript)


def smtp_client(postfix, source=None, named=False, timeout=10.0):
    """An SMTPClient for the private instance.

    SOURCE picks the client address (127.0.0.2, ::1, ...).  NAMED uses the
    listener that resolves the client name; only source 127.0.0.1 may use
    it, because any other address would make Postfix ask DNS.
    """
    if named:
        if source not in (None, "127.0.0.1"):
            raise HarnessError("the name-resolving listener is for source 127.0.0.1 only")
        if postfix.named_port is None:
            raise HarnessError("no name-resolving listener (/etc/hosts does not name 127.0.0.1)")
        return SMTPClient("127.0.0.1", postfix.named_port, source="127.0.0.1", timeout=timeout)
    host = "::1" if source and ":" in source else "127.0.0.1"
    return SMTPClient(host, postfix.port, source=source, timeout=timeout)
