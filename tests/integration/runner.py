"""The runner behind each integration entry point (automake TESTS): one test module.

Exit status: 0 all passed, 1 something failed, 77 skipped (not root,
postfix / rsyslogd not installed, or what the test module's own
missing_prerequisites() reports).  With CMDGATE_REQUIRE_INTEGRATION=1 a
missing prerequisite is a failure (exit 1) instead of a skip.
The last line printed is "N passed, N failed" (", N skipped" when some were).
CMDGATE_POSTFIX_ROOT=DIR: the Postfix under test is the one of that Debian
root, run chrooted (milter-door-trixie.test sets it), not the host's.
A milter that printed a sanitizer or valgrind report fails the run.
"""

import os
import signal
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep the source tree clean

import harness  # noqa: E402

WATCHDOG_SECONDS = 300


class Watchdog(KeyboardInterrupt):
    """The whole run took too long (raised from SIGALRM)."""


class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.successes = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.successes.append(test)


def summary(passed, failed, skipped):
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    return line


def finish(line, status):
    sys.stderr.flush()
    print(line, flush=True)
    return status


def main(module_name):
    required = os.environ.get("CMDGATE_REQUIRE_INTEGRATION") == "1"
    import importlib
    t = importlib.import_module(module_name)
    root = os.environ.get("CMDGATE_POSTFIX_ROOT") or None
    missing = harness.missing_prerequisites(root)
    # a test module may need more (test_sendmail: an unpacked Sendmail)
    if not missing and hasattr(t, "missing_prerequisites"):
        missing = t.missing_prerequisites()
    if missing:
        for reason in missing:
            print("%s: %s" % ("FAIL" if required else "SKIP", reason))
        if required:
            return finish(summary(0, 1, 0), 1)
        print("skipping the integration test (set CMDGATE_REQUIRE_INTEGRATION=1 to fail instead)")
        return 77

    suite = unittest.defaultTestLoader.loadTestsFromModule(t)
    total = suite.countTestCases()

    # problems that would fail every test: say so once, clearly
    problems = []
    try:
        harness.check_syslog()
    except harness.HarnessError as e:
        problems.append(str(e))
    binary = harness.milter_binary()
    if not os.access(binary, os.X_OK):
        problems.append("milter binary %s not found: build it first, or set CMDGATE_BIN "
                        "(or builddir)" % binary)
    if problems:
        for p in problems:
            print("FAIL: " + p)
        return finish(summary(0, total, 0), 1)

    harness.reap_stale()
    if root is not None:
        harness.reap_stale(root=root)
    print("postfix:  %s" % ("chroot %s" % root if root else "host"))
    print("milter:   %s" % binary)
    print("mail log: %s" % harness.mail_log_path())
    sys.stdout.flush()

    def on_alarm(signum, frame):
        raise Watchdog("integration test still running after %d s" % WATCHDOG_SECONDS)

    def on_terminate(signum, frame):
        raise Watchdog("interrupted by signal %d" % signum)

    signal.signal(signal.SIGALRM, on_alarm)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_terminate)
    signal.alarm(WATCHDOG_SECONDS)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=CountingResult)
    result = None
    try:
        result = runner.run(suite)
    except Watchdog as e:
        print("FAIL: %s" % e)
    finally:
        signal.alarm(0)
        try:
            t.shutdown()
        finally:
            harness._cleanup_all()
    if result is None:
        return finish(summary(0, total, 0), 1)
    reports = harness.milter_problems()
    for line in reports:
        print("FAIL: sanitizer/valgrind report: " + line)
    passed = len(result.successes)
    skipped = len(result.skipped)
    failed = total - passed - skipped  # errors in module setup count for every test
    if reports:
        failed += 1  # the milter's own report: one more failure
    if passed == 0 and failed == 0:
        print("every test was skipped")
        if not required:
            return finish(summary(passed, failed, skipped), 77)
    status = 0 if failed == 0 and passed > 0 else 1
    return finish(summary(passed, failed, skipped), status)
