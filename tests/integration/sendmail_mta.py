"""A private Sendmail 8.17 for the integration tests (python3 standard library only).

Sendmail conflicts with Postfix as a Debian package, so it is not
installed: `apt-get download sendmail-bin sendmail-base sendmail-cf` and
`dpkg -x` unpack it once into CACHE_DIR, and every run reuses that copy
(remove the directory to fetch it again).  It needs `m4` to build its .cf
and the `libwrap0` library to run (tests/install-deps.sh installs both).

SendmailInstance builds a sendmail.cf from a small test .mc that includes
the shipped conf/sendmail-cmdgate.mc and runs `sendmail -bD` as root on
loopback ports, with its own queue directory, pid file and syslog ident
(SYSLOG_IDENT), so it never meets the system's mail configuration nor the
private Postfix instances of the other tests.  It runs in a mount and UTS
namespace of its own (`unshare`), where:
  - the host name is MTA_HOSTNAME (Sendmail sleeps 60 s at start-up when
    the host name is not fully qualified);
  - /etc/hosts names the test addresses, /etc/nsswitch.conf looks host
    names up in that file only and /etc/resolv.conf points at 127.0.0.1,
    so the client lookups Sendmail always makes never leave the machine.
"""

import fcntl
import glob
import os
import shutil
import signal
import subprocess
import tempfile

import harness as h

CACHE_DIR = (os.environ.get("CMDGATE_SENDMAIL_CACHE")
             or "/var/cache/milter-cmdgate-tests/sendmail")
PACKAGES = ("sendmail-bin", "sendmail-base", "sendmail-cf")
BINARY = "usr/libexec/sendmail/sendmail"  # inside the unpacked root
CF_DIR = "usr/share/sendmail/cf"
SYSLOG_IDENT = "sm-cmdgate-test"
MTA_HOSTNAME = h.MTA_HOSTNAME
TRUSTED_NAME = "trusted." + MTA_HOSTNAME
DIR_PREFIX = "cmdgate-sendmail-"
STAMP = "unpacked"  # written once the unpacked copy is complete

HOSTS = """\
127.0.0.1\tlocalhost
127.0.0.1\t%(host)s
127.0.0.2\t%(trusted)s
::1\tlocalhost
""" % {"host": MTA_HOSTNAME, "trusted": TRUSTED_NAME}

TEST_MC = """\
divert(-1)
dnl  A private Sendmail for tests/integration: loopback ports, its own files.
divert(0)dnl
VERSIONID(`milter-cmdgate integration test')dnl
OSTYPE(`linux')dnl
FEATURE(`no_default_msa')dnl
define(`confDOMAIN_NAME', `%(host)s')dnl
define(`QUEUE_DIR', `%(dir)s/queue')dnl
define(`confPID_FILE', `%(dir)s/sendmail.pid')dnl
define(`STATUS_FILE', `%(dir)s/statistics')dnl
define(`ALIAS_FILE', `%(dir)s/aliases')dnl
define(`HELP_FILE', `%(dir)s/helpfile')dnl
define(`confSERVICE_SWITCH_FILE', `%(dir)s/service.switch')dnl
define(`confDONT_PROBE_INTERFACES', `true')dnl
dnl  no RFC 1413 queries, and no load-average throttling on a busy CI machine
define(`confTO_IDENT', `0s')dnl
define(`confQUEUE_LA', `1000')dnl
define(`confREFUSE_LA', `1000')dnl
define(`confDELIVERY_MODE', `queueonly')dnl
define(`confPRIVACY_FLAGS', `authwarnings')dnl
%(daemons)sMAILER(`local')dnl
MAILER(`smtp')dnl
define(`CMDGATE_SOCKETMAP', `inet:%(map_port)d@127.0.0.1')dnl
define(`CMDGATE_MILTER', `inet:%(milter_port)d@127.0.0.1')dnl
define(`CMDGATE_SOCKETMAP_TIMEOUT', `%(map_timeout)d')dnl
%(fail_open)sinclude(`%(fragment)s')dnl
"""


def unpacked_root():
    return os.path.join(CACHE_DIR, "root")


def ensure_unpacked(timeout=300):
    """Download and unpack the packages unless CACHE_DIR has them; returns a problem or None.

    A lock file keeps parallel runs from unpacking at the same time; the copy
    is built beside the cache and renamed into place when complete.
    """
    root = unpacked_root()
    if os.path.exists(os.path.join(CACHE_DIR, STAMP)):
        return None
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        lock = open(os.path.join(CACHE_DIR, ".lock"), "w")
    except OSError as e:
        return "cannot create the Sendmail cache %s: %s" % (CACHE_DIR, e)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(CACHE_DIR, STAMP)):
            return None
        work = tempfile.mkdtemp(prefix="download-", dir=CACHE_DIR)
        try:
            p = subprocess.run(["apt-get", "download"] + list(PACKAGES), cwd=work,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout)
            debs = sorted(glob.glob(os.path.join(work, "*.deb")))
            if p.returncode != 0 or len(debs) != len(PACKAGES):
                return ("`apt-get download %s` failed (%d), so there is no Sendmail to "
                        "test against:\n%s" % (" ".join(PACKAGES), p.returncode,
                                               p.stdout.decode("utf-8", "replace")))
            for deb in debs:
                p = subprocess.run(["dpkg", "-x", deb, os.path.join(work, "root")],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=timeout)
                if p.returncode != 0:
                    return "dpkg -x %s failed:\n%s" % (deb, p.stdout.decode("utf-8", "replace"))
            shutil.rmtree(root, ignore_errors=True)
            os.rename(os.path.join(work, "root"), root)
            with open(os.path.join(CACHE_DIR, STAMP), "w") as f:
                f.write("".join(os.path.basename(d) + "\n" for d in debs))
        except (OSError, subprocess.SubprocessError) as e:
            return "cannot unpack Sendmail into %s: %s" % (CACHE_DIR, e)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return None


def missing_prerequisites():
    """Reasons why no private Sendmail can run here (the packages are fetched first)."""
    missing = []
    for program, package in (("m4", "m4"), ("unshare", "util-linux"), ("mount", "mount"),
                             ("hostname", "hostname"), ("apt-get", "apt"), ("dpkg", "dpkg")):
        if h.find_program(program) is None:
            missing.append("%s is not installed (apt-get install %s)" % (program, package))
    if missing:
        return missing
    problem = ensure_unpacked()
    if problem:
        return [problem]
    binary = os.path.join(unpacked_root(), BINARY)
    p = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    absent = [l.split()[0] for l in p.stdout.decode("utf-8", "replace").splitlines()
              if "not found" in l]
    if p.returncode != 0 or absent:
        missing.append("%s cannot run: missing %s (apt-get install libwrap0)"
                       % (binary, ", ".join(absent) or "libraries"))
    p = subprocess.run(["unshare", "--mount", "--uts", "true"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        missing.append("`unshare --mount --uts` fails here (%s): Sendmail needs a "
                       "namespace of its own" % p.stdout.decode("utf-8", "replace").strip())
    return missing


def fragment_path():
    """The shipped .mc fragment (srcdir set by make check, else this checkout)."""
    top = os.environ.get("srcdir") or os.path.join(h.HERE, "..", "..")
    return os.path.abspath(os.path.join(top, "conf", "sendmail-cmdgate.mc"))


def daemon_pid(directory):
    """The pid in DIRECTORY/sendmail.pid (its first line), or None."""
    try:
        with open(os.path.join(directory, "sendmail.pid")) as f:
            return int(f.readline())
    except (OSError, ValueError):
        return None


def reap_stale(tmpdir=None):
    """Stop and remove what a killed run left: a Sendmail whose queue is in its directory."""
    tmpdir = tmpdir or tempfile.gettempdir()
    for path in glob.glob(os.path.join(tmpdir, DIR_PREFIX + "*")):
        if h._owner_alive(path) is not False:
            continue
        pid = daemon_pid(path)
        try:
            # The daemon's working directory is its queue directory.
            if pid is not None and os.readlink("/proc/%d/cwd" % pid).startswith(path + "/"):
                os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)


class SendmailInstance:
    """sendmail -bD with the shipped fragment, on 127.0.0.1 (and [::1]) port `port`.

    map_port and milter_port are where the fragment's socketmap and milter
    lines point (nobody need listen there); fail_open defines
    CMDGATE_FAIL_OPEN; map_timeout is CMDGATE_SOCKETMAP_TIMEOUT (seconds).
    """

    def __init__(self, map_port, milter_port, fail_open=False, map_timeout=3, ipv6=None):
        self.map_port = map_port
        self.milter_port = milter_port
        self.fail_open = fail_open
        self.map_timeout = map_timeout
        self.ipv6 = h.ipv6_loopback_available() if ipv6 is None else ipv6
        self.root = unpacked_root()
        self.dir = None
        self.port = None
        self.proc = None
        self.script = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def mc(self):
        daemons = "DAEMON_OPTIONS(`Port=%d, Addr=127.0.0.1, Name=MTA')dnl\n" % self.port
        if self.ipv6:
            daemons += ("DAEMON_OPTIONS(`Port=%d, Addr=::1, Family=inet6, Name=MTA6')dnl\n"
                        % self.port)
        return TEST_MC % {
            "host": MTA_HOSTNAME, "dir": self.dir, "daemons": daemons,
            "map_port": self.map_port, "milter_port": self.milter_port,
            "map_timeout": self.map_timeout, "fragment": fragment_path(),
            "fail_open": "define(`CMDGATE_FAIL_OPEN')dnl\n" if self.fail_open else "",
        }

    def _write(self, name, text, mode=0o644):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def _build_cf(self):
        mc = self._write("test.mc", self.mc())
        cf_dir = os.path.join(self.root, CF_DIR)
        with open(os.path.join(self.dir, "sendmail.cf"), "wb") as out:
            p = subprocess.run(["m4", "-D_CF_DIR_=%s/" % cf_dir,
                                os.path.join(cf_dir, "m4", "cf.m4"), mc],
                               stdout=out, stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0 or p.stderr:
            raise h.HarnessError("m4 could not build sendmail.cf from %s (%d):\n%s"
                                 % (mc, p.returncode, p.stderr.decode("utf-8", "replace")))

    def _namespace_script(self):
        """Shell script run by unshare: private /etc files and host name, then Sendmail."""
        files = [("hosts", HOSTS), ("resolv.conf", "nameserver 127.0.0.1\n")]
        try:
            with open("/etc/nsswitch.conf") as f:
                nss = [l for l in f.read().splitlines() if not l.startswith("hosts:")]
            files.append(("nsswitch.conf", "\n".join(nss + ["hosts: files", ""])))
        except OSError:
            pass  # glibc's default then; resolv.conf keeps DNS on the loopback
        lines = ["#!/bin/sh", "set -e"]
        for name, text in files:
            target = os.path.join("/etc", name)
            if os.path.exists(target):
                lines.append("mount --bind %s %s" % (self._write(name, text), target))
        lines.append("hostname %s" % MTA_HOSTNAME)
        lines.append('[ $# -gt 0 ] || set -- -bD')  # the daemon, unless told otherwise
        lines.append('exec %s -C%s -L %s "$@"' % (os.path.join(self.root, BINARY),
                                                   os.path.join(self.dir, "sendmail.cf"),
                                                   SYSLOG_IDENT))
        return self._write("run.sh", "\n".join(lines) + "\n", 0o755)

    def start(self, timeout=10.0):
        h._live.append(self)
        try:
            self.dir = tempfile.mkdtemp(prefix=DIR_PREFIX)
            h.mark_owned(self.dir)
            os.mkdir(os.path.join(self.dir, "queue"), 0o700)
            self._write("aliases", "")
            self._write("service.switch", "hosts files\naliases files\n")
            self.port = h.pick_port(also_ipv6=self.ipv6)
            self._build_cf()
            self.script = self._namespace_script()
            out = open(os.path.join(self.dir, "sendmail.out"), "wb")
            try:
                self.proc = subprocess.Popen(["unshare", "--mount", "--uts", self.script],
                                             stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            finally:
                out.close()
            # Sendmail writes its pid file once all its sockets listen (getrequests).
            if not h.wait_until(lambda: daemon_pid(self.dir) == self.proc.pid
                                or self.proc.poll() is not None, timeout):
                raise h.HarnessError("Sendmail does not listen on port %d after %.0f s:\n%s"
                                     % (self.port, timeout, self.output()))
            if self.proc.poll() is not None:
                raise h.HarnessError("Sendmail exited with status %s:\n%s"
                                     % (self.proc.returncode, self.output()))
        except BaseException:
            self.stop()
            raise
        return self

    def smtp_on_stdin(self, lines, timeout=20):
        """`sendmail -bs` with the same configuration: an SMTP session on standard
        input, as a local program would have it; returns the reply lines."""
        data = "".join(l + "\r\n" for l in lines).encode()
        p = subprocess.run(["unshare", "--mount", "--uts", self.script, "-bs"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        return p.stdout.decode("utf-8", "replace").replace("\r\n", "\n").splitlines()

    def output(self):
        """What Sendmail printed; it logs to syslog as SYSLOG_IDENT otherwise."""
        try:
            with open(os.path.join(self.dir, "sendmail.out"), "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            text = ""
        return text or "(no output: see the %s lines in %s)" % (SYSLOG_IDENT, h.mail_log_path())

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM to the daemon and the session processes it forked, SIGKILL if need be."""
        if self in h._live:
            h._live.remove(self)
        if self.proc is not None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except OSError:
                    pass
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # session processes still at work
            except OSError:
                pass
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
