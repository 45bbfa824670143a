"""Shared set-up for the robustness tests (test_hostile, test_faults,
test_privilege, test_memcheck): a work directory, milters and private
Postfix instances built with harness.py, audit lines by session, and the
process facts the tests measure (/proc/PID/status, fd table).
"""

import os
import shutil
import signal
import tempfile
import time

import harness as h

# A milter's threads and descriptors before any session, and how long a
# session's thread and socket may take to go away after it ended.
SETTLE_SECONDS = 10.0


class Rig:
    """A work directory with a policy file; milters and Postfixes started in it."""

    def __init__(self, policy):
        self.log = h.MailLog()
        h.check_syslog(self.log)
        self.workdir = tempfile.mkdtemp(prefix="cmdgate-it-")
        os.chmod(self.workdir, 0o755)
        h.mark_owned(self.workdir)
        self.policy_path = os.path.join(self.workdir, "cmdgate.conf")
        self.write_policy(policy)
        self.milters = []
        self.postfixes = []

    def write_policy(self, text, path=None):
        path = path or self.policy_path
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def milter(self, **kwargs):
        """Start a milter on this rig's policy (harness.MilterProcess arguments)."""
        kwargs.setdefault("workdir", self.workdir)
        m = h.MilterProcess(kwargs.pop("policy_path", self.policy_path), **kwargs)
        self.milters.append(m)
        return m.start()

    def postfix(self, **kwargs):
        p = h.PostfixInstance(**kwargs)
        self.postfixes.append(p)
        return p.start()

    def stop(self):
        try:
            for p in self.postfixes:
                p.stop()
        finally:
            try:
                for m in self.milters:
                    m.stop()
            finally:
                shutil.rmtree(self.workdir, ignore_errors=True)


def started(policy, set_up=lambda r: None):
    """A Rig for POLICY once SET_UP(rig) ran; stopped again if SET_UP fails."""
    r = Rig(policy)
    try:
        set_up(r)
    except BaseException:
        r.stop()
        raise
    return r


# ---------------------------------------------------------------------------
# Audit lines


def audit_records(log, pid, since=0):
    return log.select(lambda r: r.pid == pid and r.ident == h.MILTER_IDENT
                      and h.is_audit_message(r.msg), since)


def sessions(log, pid, since=0):
    """{session id: [AuditLine, ...]} of the sessions of milter PID that
    began at SINCE or later (a connect line), in order."""
    out = {}
    for r in audit_records(log, pid, since):
        line = h.parse_audit(r.msg)
        sid = line.get("session")
        if sid in out or line.get("event") == "connect":
            out.setdefault(sid, []).append(line)
    return out


def wait_closed_sessions(log, pid, since, count, timeout=10.0):
    """Wait until at least COUNT sessions of PID began since SINCE and all
    of them have their close line (or TIMEOUT passed); returns sessions()."""
    deadline = time.monotonic() + timeout
    while True:
        found = sessions(log, pid, since)
        closed = [s for s, lines in found.items() if lines[-1].get("event") == "close"]
        if (len(closed) >= count and len(closed) == len(found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def items(line):
    """An AuditLine's (key, value) pairs without the session id."""
    return [(k, v) for k, v in line.items if k != "session"]


# ---------------------------------------------------------------------------
# The process


def status(pid):
    """/proc/PID/status as {field: value text}."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def threads(pid):
    return int(status(pid)["Threads"])


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kb(pid):
    return int(status(pid)["VmRSS"].split()[0])


def settle(pid, threads_want, fds_want, timeout=SETTLE_SECONDS):
    """Wait until PID is back to THREADS_WANT threads and FDS_WANT fds; returns both."""
    deadline = time.monotonic() + timeout
    while True:
        now = (threads(pid), fds(pid))
        if now == (threads_want, fds_want) or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def kill9(milter):
    """SIGKILL, as a crash would; waits for the process to be gone."""
    milter.proc.send_signal(signal.SIGKILL)
    milter.proc.wait(10)


def sanitized(binary=None):
    """True for an AddressSanitizer build of the daemon (valgrind cannot
    run it; its quarantine of freed memory makes RSS say nothing)."""
    with open(binary or h.milter_binary(), "rb") as f:
        return b"__asan_init" in f.read()


def raise_fd_limit():
    """This test process holds thousands of sockets: lift its soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
