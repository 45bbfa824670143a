#!/usr/bin/env python3
"""make bench: milter-cmdgate measured against the limit of its machinery.

Sections (see tests/bench/README.md):
  1 milter door vs null-milter      (milter-load, concurrency 1/50/500)
  2 policy door vs null-policy      (policy-load, same concurrencies)
  3 rule scaling                    (rules-bench: 10/1000/100000 CIDR rules)
  4 memory with 1000 sessions held  (milter-load -H)
  5 end to end through Postfix      (smtp-source, private loopback instances)

Every comparison runs both sides in the same run, alternating, several
repetitions; ratios are medians of the paired (adjacent) runs.  Prints a
table and writes it to RESULTS.md with the date, machine and command.
Standard library only; needs root for sections 4's sink variant and 5.
"""

import argparse
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.dont_write_bytecode = True
import harness  # noqa: E402  (private Postfix instances, ports, waiting)

CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 8192          # RLIMIT_NOFILE for the daemons: 1000 sessions need > 1024
CONCURRENCY = (1, 50, 500)
VERBS = "EXPN,XFOO,TURN,XFOO"  # refused, passed, refused, passed ...
UNKNOWN_PER_SESSION = 6        # 3 refused (the shipped limit is 3 probes) + 3 passed
CLIENT_ADDR = "198.51.100.25"  # in no rule of the shipped policy: the verbs' own actions apply

TARGETS = {"door": 0.95, "rules": 2.0, "e2e": 0.9}


# ---------------------------------------------------------------------------
# processes


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


class Daemon:
    """A server process of the bench, stopped by its own PID only."""

    def __init__(self, name, argv, port, workdir):
        self.name, self.argv, self.port = name, argv, port
        self.out_path = os.path.join(workdir, name + ".out")
        self.proc = None

    def start(self):
        out = open(self.out_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=raise_nofile)
        finally:
            out.close()
        if not harness.wait_until(lambda: harness.port_listening("127.0.0.1", self.port), 10):
            raise harness.HarnessError("%s does not listen on port %d:\n%s"
                                       % (self.name, self.port, self.output()))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def cpu_seconds(pid):
    """utime + stime of all threads of PID, in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_status(pid):
    """(RSS KiB, threads, open fds) of PID."""
    rss = threads = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir("/proc/%d/fd" % pid))
    return rss, threads, fds


def pids_named(comm):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/comm" % entry) as f:
                    if f.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def parse_result(line):
    """'result a=1 b=x ...' -> dict with numbers where they are numbers."""
    out = {}
    for item in line.split():
        if "=" in item:
            k, v = item.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def run_client(argv, timeout=120):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       preexec_fn=raise_nofile)
    lines = [l for l in p.stdout.decode().splitlines() if l.startswith("result ")]
    if not lines:
        raise harness.HarnessError("%s printed no result (exit %d):\n%s"
                                   % (" ".join(argv), p.returncode, p.stderr.decode()))
    r = parse_result(lines[-1])
    r["exit"] = p.returncode
    r["stderr"] = p.stderr.decode().strip()
    return r


# ---------------------------------------------------------------------------
# statistics and printing


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    return ("%%.%df" % digits) % v


def verdict(ok):
    return "met" if ok else "**missed**"


class Report:
    def __init__(self):
        self.lines = []

    def add(self, text=""):
        self.lines.append(text)
        print(text, flush=True)

    def table(self, header, rows):
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.add("| " + " | ".join(str(c) for c in row) + " |")
        self.add()


# ---------------------------------------------------------------------------
# sections 1 and 2: the doors against their null counterparts


def measure(daemon, argv, sessions_key):
    """One client run against DAEMON, with the CPU it and rsyslogd spent."""
    syslogd = pids_named("rsyslogd")
    c0 = cpu_seconds(daemon.pid)
    s0 = sum(cpu_seconds(p) for p in syslogd)
    r = run_client(argv)
    r["cpu"] = cpu_seconds(daemon.pid) - c0
    r["syslog_cpu"] = sum(cpu_seconds(p) for p in syslogd) - s0
    r["daemon"] = daemon.name
    if not daemon.alive():
        raise harness.HarnessError("%s died during the run:\n%s" % (daemon.name, daemon.output()))
    units = r.get(sessions_key, 0)
    # CPU per unit of work over the whole run (warm-up included), measured window excluded
    r["cpu_us"] = r["cpu"] / units * 1e6 if units else None
    r["syslog_us"] = r["syslog_cpu"] / units * 1e6 if units else None
    return r


def door_section(rep, title, variants, client_argv, rate_key, count_key, reps, check):
    """Runs every variant at every concurrency, REPS times, rotating the order."""
    results = {}  # (variant name, conc) -> [result, ...]
    for conc in CONCURRENCY:
        for i in range(reps):
            order = variants[i % len(variants):] + variants[:i % len(variants)]
            for daemon in order:
                r = measure(daemon, client_argv(daemon, conc), count_key)
                problem = check(daemon, r)
                if problem:
                    raise harness.HarnessError("%s, %s at concurrency %d: %s\n%s"
                                               % (title, daemon.name, conc, problem, r["stderr"]))
                results.setdefault((daemon.name, conc), []).append(r)
    return results


def paired_ratio(results, a, b, conc, key):
    """Median over repetitions of a/b, each pair taken from the same repetition."""
    ra, rb = results[(a, conc)], results[(b, conc)]
    return median([x[key] / y[key] for x, y in zip(ra, rb) if y[key]])


def door_table(rep, results, base, variants, rate_key, unit):
    rows = []
    ratios = {}
    for conc in CONCURRENCY:
        for name in variants:
            rs = results[(name, conc)]
            ratio = None if name == base else paired_ratio(results, name, base, conc, rate_key)
            if ratio is not None:
                ratios[(name, conc)] = ratio
            rows.append([conc, name, fmt(median([r[rate_key] for r in rs])),
                         "" if ratio is None else fmt(ratio, 3),
                         fmt(median([r["p50_us"] for r in rs]), 1),
                         fmt(median([r["p99_us"] for r in rs]), 1),
                         fmt(median([r["cpu_us"] for r in rs]), 1),
                         fmt(median([r["syslog_us"] for r in rs]), 1)])
    rep.table(["concurrency", "server", unit + "/s", "ratio to " + base, "p50 µs", "p99 µs",
               "server CPU µs/" + unit[:-1] if unit.endswith("s") else unit,
               "rsyslogd CPU µs/" + (unit[:-1] if unit.endswith("s") else unit)], rows)
    return ratios


# ---------------------------------------------------------------------------
# section 3: rule scaling


def rules_section(rep, args, workdir):
    out = subprocess.run([os.path.join(args.builddir, "tests/bench/rules-bench"), workdir],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    if out.returncode != 0:
        raise harness.HarnessError("rules-bench failed:\n" + out.stderr.decode())
    rows = {}
    for line in out.stdout.decode().splitlines():
        if line.startswith("rules "):
            r = parse_result(line)
            rows[int(r["n"])] = r
    small, big = rows[min(rows)], rows[max(rows)]
    table = []
    for n in sorted(rows):
        r = rows[n]
        table.append(["{:,}".format(n).replace(",", " "), fmt(r["late_ns"], 1), fmt(r["miss_ns"], 1),
                      fmt(r["load_ms"], 2), fmt(r["reload_ms"], 2), fmt(r["policy_kib"])])
    rep.table(["rules", "decision, late hit (ns)", "decision, miss (ns)", "config_load (ms)",
               "reload (ms)", "policy memory (KiB)"], table)
    late = big["late_ns"] / small["late_ns"]
    miss = big["miss_ns"] / small["miss_ns"]
    rep.add("Ratio %d/%d rules: late hit %.2f, miss %.2f (target <= %.1f: %s)."
            % (max(rows), min(rows), late, miss, TARGETS["rules"],
               verdict(max(late, miss) <= TARGETS["rules"])))
    rep.add()
    return max(late, miss)


# ---------------------------------------------------------------------------
# section 4: memory with many sessions held open


def settle(pid, want_threads, timeout=15):
    harness.wait_until(lambda: proc_status(pid)[1] <= want_threads, timeout, 0.1)
    time.sleep(0.3)
    return proc_status(pid)


def hold_cycle(load, daemon, sessions):
    """Opens SESSIONS sessions, measures, closes them; (held status, after status, held count)."""
    p = subprocess.Popen([load, "-p", str(daemon.port), "-c", str(sessions), "-k", "2",
                          "-v", VERBS, "-a", CLIENT_ADDR, "-H"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=raise_nofile)
    first = p.stdout.readline().decode()
    held = int(parse_result("x " + first).get("held", 0))
    time.sleep(0.5)
    during = proc_status(daemon.pid)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    out, err = p.communicate(timeout=120)
    if p.returncode != 0:
        raise harness.HarnessError("hold cycle against %s: %s %s" % (daemon.name, out.decode(), err.decode()))
    return during, held


def overload_probe(rep, args, cmdgate_argv, workdir, sessions=1100):
    """The daemon at the common soft limit of 1024 descriptors, asked for more sessions."""
    load = os.path.join(args.builddir, "tests/bench/milter-load")
    port = harness.pick_port()

    def nofile_1024():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    argv = cmdgate_argv(port)
    out = open(os.path.join(workdir, "overload.out"), "wb")
    d = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         preexec_fn=nofile_1024)
    out.close()
    try:
        harness.wait_until(lambda: harness.port_listening("127.0.0.1", port), 10)
        p = subprocess.Popen([load, "-p", str(port), "-c", str(sessions), "-k", "2", "-v", VERBS,
                              "-a", CLIENT_ADDR, "-H", "-T", "6"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=raise_nofile)
        held = parse_result("x " + p.stdout.readline().decode())
        fds = proc_status(d.pid)[2]
        c0 = cpu_seconds(d.pid)
        time.sleep(2)
        burn = (cpu_seconds(d.pid) - c0) / 2
        fresh = run_client([load, "-p", str(port), "-c", "1", "-k", "2", "-v", VERBS, "-a", CLIENT_ADDR,
                            "-d", "1", "-w", "0"], timeout=60)
        p.stdin.write(b"go\n")
        p.stdin.flush()
        p.communicate(timeout=120)
        after = run_client([load, "-p", str(port), "-c", "1", "-k", "2", "-v", VERBS, "-a", CLIENT_ADDR,
                            "-d", "1", "-w", "0.2"], timeout=60)
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(10)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait(5)
    rep.add("At RLIMIT_NOFILE 1024 (the usual soft limit, e.g. under systemd without LimitNOFILE=), "
            "%d sessions asked: %d held, %d stuck opening (the daemon at %d descriptors); while "
            "full the daemon burns %.0f %% of a CPU and a new session completes %d commands in 1 s "
            "(it waits in the listen queue; libmilter logs nothing); after the held sessions close "
            "a new session completes %d commands in 1 s."
            % (sessions, held.get("held", 0), held.get("opening", 0), fds, burn * 100,
               fresh.get("commands", 0), after.get("commands", 0)))
    rep.add()


def memory_section(rep, args, daemons, sessions=1000, cycles=3):
    load = os.path.join(args.builddir, "tests/bench/milter-load")
    rows = []
    growth_ok = True
    for d in daemons:
        base = proc_status(d.pid)
        afters = []
        held_status = None
        for _ in range(cycles):
            during, held = hold_cycle(load, d, sessions)
            if held_status is None:
                held_status = (during, held)
            afters.append(settle(d.pid, base[1]))
        (during, held) = held_status
        first, last = afters[0], afters[-1]
        # growth: RSS after the last cycle against after the first (glibc keeps
        # freed thread stacks and arenas for reuse after the first), fds and
        # threads against the baseline
        grown = last[0] - first[0]
        ok = grown <= 512 and last[2] == base[2] and last[1] == base[1]
        growth_ok = growth_ok and ok
        rows.append([d.name, held, "%d / %d" % (base[0], base[2]), "%d / %d / %d" % (during[0], during[1], during[2]),
                     "%.1f" % ((during[0] - base[0]) / max(held, 1)),
                     " → ".join("%d / %d / %d" % (a[0], a[1], a[2]) for a in afters),
                     "%+d KiB" % grown, verdict(ok)])
    rep.table(["server", "sessions held", "baseline RSS KiB / fds", "held: RSS KiB / threads / fds",
               "KiB per held session", "after each of %d cycles: RSS KiB / threads / fds" % cycles,
               "RSS growth cycle 1→%d" % cycles, "no growth"], rows)
    return growth_ok


# ---------------------------------------------------------------------------
# section 5: end to end through Postfix


def queue_empty(inst):
    for sub in ("maildrop", "incoming", "active", "deferred"):
        d = os.path.join(inst.queue_dir, sub)
        for _root, _dirs, files in os.walk(d):
            if files:
                return False
    return True


def e2e_section(rep, args, milters, reps, messages):
    """MILTERS: [(name, port)]; one Postfix without a milter and one per milter."""
    source = harness.find_program("smtp-source")
    if source is None or os.geteuid() != 0:
        rep.add("Skipped: needs root and Postfix's smtp-source.")
        rep.add()
        return None
    tuning = {"default_process_limit": "200", "smtpd_client_connection_count_limit": "0",
              "smtpd_client_connection_rate_limit": "0", "smtpd_client_message_rate_limit": "0"}
    instances = []
    try:
        for name, port in [("without milter", None)] + list(milters):
            inst = harness.PostfixInstance(milter_port=port, extra_main=tuning, ipv6=False)
            instances.append((name, inst))
            inst.start()
        results = {name: [] for name, _ in instances}
        for i in range(reps):
            order = instances[i % len(instances):] + instances[:i % len(instances)]
            for name, inst in order:
                harness.wait_until(lambda: queue_empty(inst), 30, 0.2)
                argv = [source, "-s", "20", "-m", str(messages), "-l", "1024",
                        "-f", "sender@bench.example", "-t", "user@" + harness.MTA_HOSTNAME,
                        "-M", "client.bench.example", "127.0.0.1:%d" % inst.port]
                t0 = time.monotonic()
                p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
                secs = time.monotonic() - t0
                if p.returncode != 0:
                    raise harness.HarnessError("smtp-source failed: " + p.stdout.decode())
                results[name].append(messages / secs)
        base = results["without milter"]
        rows = []
        ratios = {}
        for name, v in results.items():
            ratio = None if name == "without milter" else median([m / b for m, b in zip(v, base)])
            ratios[name] = ratio
            rows.append([name, fmt(median(v), 1), "" if ratio is None else fmt(ratio, 3),
                         " ".join(fmt(x) for x in v)])
        rep.table(["Postfix 3.7 on loopback", "messages/s (median)", "ratio to without", "each run"], rows)
        ratio = ratios[milters[0][0]]
        rep.add("Ratio with/without milter-cmdgate: %.3f (target >= %.1f: %s)."
                % (ratio, TARGETS["e2e"], verdict(ratio >= TARGETS["e2e"])))
        rep.add()
        return ratio
    finally:
        for _name, inst in instances:
            inst.stop()


# ---------------------------------------------------------------------------


def machine_line():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "nproc %d, %s, Linux %s" % (os.cpu_count(), model, platform.release())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builddir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--srcdir", default=os.path.join(HERE, "..", ".."))
    ap.add_argument("--results", help="write the table here (default: SRCDIR/tests/bench/RESULTS.md)")
    ap.add_argument("--reps", type=int, default=4, help="repetitions per comparison")
    ap.add_argument("--seconds", type=float, default=1.5, help="measuring window of one run")
    ap.add_argument("--quick", action="store_true", help="1 repetition, short runs (a smoke test)")
    ap.add_argument("--only", default="12345", help="sections to run, e.g. 34 (default all)")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.seconds = 1, 0.5
    args.builddir = os.path.abspath(args.builddir)
    args.srcdir = os.path.abspath(args.srcdir)
    results_path = args.results or os.path.join(args.srcdir, "tests", "bench", "RESULTS.md")
    bench = os.path.join(args.builddir, "tests", "bench")
    cmdgate_bin = os.path.join(args.builddir, "milter", "milter-cmdgate")
    started = time.monotonic()
    load_before = os.getloadavg()

    if not pids_named("rsyslogd"):
        print("make bench: rsyslogd is not running; start it (`rsyslogd`): the audit trail is part of the cost",
              file=sys.stderr)
        return 1

    workdir = tempfile.mkdtemp(prefix="cmdgate-bench-")
    daemons = []
    rep = Report()
    missed = []
    try:
        def daemon(name, argv, port):
            d = Daemon(name, argv, port, workdir)
            daemons.append(d)
            return d.start()

        def cmdgate_conf(name, policy_port):
            """The shipped policy, with the bench's policy port and the probe limit off."""
            path = os.path.join(workdir, name + ".conf")
            with open(os.path.join(args.srcdir, "conf", "milter-cmdgate.conf")) as f:
                text = f.read()
            text = re.sub(r"^\s*policy_socket\s*=.*$", "", text, flags=re.M)
            # Other doors the shipped policy opens stay open, each on a free port.
            text = re.sub(r'^(\s*\w+_socket\s*=\s*)"inet:\d+@127\.0\.0\.1"',
                          lambda m: '%s"inet:%d@127.0.0.1"' % (m.group(1), harness.pick_port()),
                          text, flags=re.M)
            text = re.sub(r"\bprobes\s*=\s*\d+", "probes = 0", text)
            text += '\n# added by the bench\npolicy_socket = "inet:%d@127.0.0.1";\n' % policy_port
            with open(path, "w") as f:
                f.write(text)
            return path

        ports = {k: harness.pick_port() for k in ("null", "cg", "cgs", "np", "cgp", "cgsp")}
        null = daemon("null-milter", [os.path.join(bench, "null-milter"), "-p",
                                      "inet:%d@127.0.0.1" % ports["null"]], ports["null"])
        nullp = daemon("null-policy", [os.path.join(bench, "null-policy"), str(ports["np"])], ports["np"])
        cg = daemon("cmdgate", [cmdgate_bin, "-f", "-c", cmdgate_conf("cmdgate", ports["cgp"]),
                                "-p", "inet:%d@127.0.0.1" % ports["cg"]], ports["cg"])
        harness.wait_until(lambda: harness.port_listening("127.0.0.1", ports["cgp"]), 10)
        cg_policy = Daemon("cmdgate", None, ports["cgp"], workdir)
        cg_policy.proc = cg.proc

        # The same daemon with /dev/log bind-mounted to a sink in a private mount namespace.
        sinked = None
        sink = None
        if os.geteuid() == 0 and shutil.which("unshare"):
            sock = os.path.join(workdir, "sink.sock")
            sink = Daemon("log-sink", [os.path.join(bench, "log-sink"), sock], 0, workdir)
            sink.proc = subprocess.Popen(sink.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            daemons.append(sink)
            sink.proc.stdout.readline()  # "ready"
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$0" /dev/log && exec "$@"', sock,
                    cmdgate_bin, "-f", "-c", cmdgate_conf("cmdgate-sink", ports["cgsp"]),
                    "-p", "inet:%d@127.0.0.1" % ports["cgs"]]
            sinked = daemon("cmdgate, syslog to a sink", argv, ports["cgs"])
            harness.wait_until(lambda: harness.port_listening("127.0.0.1", ports["cgsp"]), 10)
            sinked_policy = Daemon("cmdgate, syslog to a sink", None, ports["cgsp"], workdir)
            sinked_policy.proc = sinked.proc

        rep.add("# milter-cmdgate benchmark results")
        rep.add()
        rep.add("- date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        rep.add("- machine: %s" % machine_line())
        rep.add("- command: `make bench` (tests/bench/run-bench.py --reps %d --seconds %g)" % (args.reps, args.seconds))
        rep.add("- policy: conf/milter-cmdgate.conf as shipped, except its door ports and "
                "limits.probes = 0 (every session does the same work; the shared probe table of "
                "limits.window is still counted)")
        rep.add("- load average before the run: %.2f %.2f %.2f (a shared machine: ratios "
                "of adjacent runs, not absolute figures, are the result)" % load_before)
        rep.add()

        # 1. milter door
        if "1" in args.only:
            rep.add("## 1. Milter door vs null milter")
            rep.add()
            rep.add("Each session: option negotiation, connect-stage macros, connect (IPv4 %s), HELO, "
                    "%d unknown commands (%s, in turn: 3 refused by the shipped policy, 3 passed), quit. "
                    "Medians of %d runs of %g s per cell, the servers alternating; ratio = median of "
                    "the ratios of adjacent runs. Latency is per unknown command, as the MTA sees it. "
                    "CPU columns: the server's and rsyslogd's CPU time per session."
                    % (CLIENT_ADDR, UNKNOWN_PER_SESSION, VERBS, args.reps, args.seconds))
            rep.add()
            load = os.path.join(bench, "milter-load")
            variants = [null, cg] + ([sinked] if sinked else [])

            def milter_argv(d, conc):
                return [load, "-p", str(d.port), "-c", str(conc), "-k", str(UNKNOWN_PER_SESSION),
                        "-v", VERBS, "-a", CLIENT_ADDR, "-d", str(args.seconds), "-w", "0.5"]

            def milter_check(d, r):
                if r["errors"] or r["exit"]:
                    return "%d errors" % r["errors"]
                want = 0 if d is null else r["commands"] / 2
                if abs(r["refused"] - want) > 2 * r["conc"] + r["commands"] * 0.01:  # sessions cut by the window
                    return "refused %d of %d commands, expected %d" % (r["refused"], r["commands"], want)
                return None

            res = door_section(rep, "milter door", variants, milter_argv, "sessions_per_s", "sessions",
                               args.reps, milter_check)
            ratios = door_table(rep, res, null.name, [v.name for v in variants], "sessions_per_s", "sessions")
            for conc in CONCURRENCY:
                r = ratios[(cg.name, conc)]
                if r < TARGETS["door"]:
                    missed.append("milter door at concurrency %d: %.3f" % (conc, r))
            rep.add("Target cmdgate/null >= %.2f: %s." % (TARGETS["door"], ", ".join(
                "%d: %.3f %s" % (c, ratios[(cg.name, c)], verdict(ratios[(cg.name, c)] >= TARGETS["door"]))
                for c in CONCURRENCY)))
            rep.add()

        # 2. policy door
        if "2" in args.only:
            rep.add("## 2. Policy door vs null policy server")
            rep.add()
            rep.add("Persistent connections as Postfix keeps them; requests with Postfix 3.7's attributes, "
                    "protocol_state VRFY (refused by the shipped policy, one audit line) and RCPT "
                    "(DUNNO, not logged) in turn. The null server answers DUNNO to everything.")
            rep.add()
            pload = os.path.join(bench, "policy-load")
            pvariants = [nullp, cg_policy] + ([sinked_policy] if sinked else [])

            def policy_argv(d, conc):
                return [pload, "-p", str(d.port), "-c", str(conc), "-a", CLIENT_ADDR,
                        "-d", str(args.seconds), "-w", "0.5"]

            def policy_check(d, r):
                if r["errors"] or r["exit"]:
                    return "%d errors" % r["errors"]
                want = 0 if d is nullp else r["requests"] / 2
                if abs(r["refused"] - want) > 2 * r["conc"] + r["requests"] * 0.01:
                    return "refused %d of %d requests, expected %d" % (r["refused"], r["requests"], want)
                return None

            pres = door_section(rep, "policy door", pvariants, policy_argv, "requests_per_s", "requests",
                                args.reps, policy_check)
            pratios = door_table(rep, pres, nullp.name, [v.name for v in pvariants], "requests_per_s", "requests")
            rep.add("cmdgate/null: %s (same target as the milter door, >= %.2f)." % (", ".join(
                "%d: %.3f %s" % (c, pratios[(cg.name, c)], verdict(pratios[(cg.name, c)] >= TARGETS["door"]))
                for c in CONCURRENCY), TARGETS["door"]))
            rep.add()
            for conc in CONCURRENCY:
                if pratios[(cg.name, conc)] < TARGETS["door"]:
                    missed.append("policy door at concurrency %d: %.3f" % (conc, pratios[(cg.name, conc)]))

        # 3. rules
        if "3" in args.only:
            rep.add("## 3. Rule scaling")
            rep.add()
            rep.add("policy_decide (milter/libcmdgate.a) on policies of N rules, one random CIDR prefix "
                    "each (IPv4 /16–/32 and IPv6 2000::/3 /32–/128 alternating); 1024 client addresses "
                    "inside rules of the last tenth (late hit) and 1024 in no rule (miss), every answer "
                    "checked against a linear scan first. One binary, sizes interleaved, median of 41 "
                    "rounds of 40 000 decisions per pool. Load = config_load of the file; reload = running_reload "
                    "(the SIGUSR1 path: read, swap, free the old policy).")
            rep.add()
            rules_dir = os.path.join(workdir, "rules")
            os.mkdir(rules_dir)
            worst = rules_section(rep, args, rules_dir)
            if worst > TARGETS["rules"]:
                missed.append("rules 100000/10: %.2f" % worst)

        # 4. memory
        if "4" in args.only:
            rep.add("## 4. Memory: 1 000 sessions held open")
            rep.add()
            rep.add("Freshly started daemons; each session negotiated, connected, said HELO and 2 unknown "
                    "commands, then waits; the daemons run with RLIMIT_NOFILE %d (at the usual 1024 a "
                    "daemon runs out of descriptors near 1 000 sessions). Three cycles of open 1 000 / "
                    "close all; RSS, threads and fds from /proc after each. Memory freed by closed "
                    "sessions stays in the allocator for the next ones, so RSS after closing is compared "
                    "between cycles (growth), fds and threads with the baseline." % NOFILE)
            rep.add()
            # Fresh daemons: their baseline is what a just-started daemon holds.
            mports = (harness.pick_port(), harness.pick_port())
            fresh = [daemon("null-milter", [os.path.join(bench, "null-milter"), "-p",
                                            "inet:%d@127.0.0.1" % mports[0]], mports[0]),
                     daemon("cmdgate", [cmdgate_bin, "-f", "-c", cmdgate_conf("cmdgate-memory", harness.pick_port()),
                                        "-p", "inet:%d@127.0.0.1" % mports[1]], mports[1])]
            time.sleep(0.5)
            if not memory_section(rep, args, fresh):
                missed.append("memory: growth after sessions closed")
            for d in fresh:
                d.stop()
            overload_conf = cmdgate_conf("overload", harness.pick_port())
            overload_probe(rep, args, lambda port: [cmdgate_bin, "-f", "-c", overload_conf,
                                                    "-p", "inet:%d@127.0.0.1" % port], workdir)

        # 5. end to end
        if "5" in args.only:
            rep.add("## 5. End to end: smtp-source through a private Postfix")
            rep.add()
            e2e_reps = 2 if args.quick else 3
            rep.add("Private Postfix 3.7 instances on loopback (tests/integration/harness.py): one "
                    "without a milter, one with smtpd_milters = the cmdgate daemon above, one with the "
                    "null milter (what any milter costs); smtp-source -s 20 sessions, one 1 KiB message "
                    "per session, the instances alternating, %d runs each; accepted mail is discarded."
                    % e2e_reps)
            rep.add()
            e2e = e2e_section(rep, args, [("with milter-cmdgate", cg.port), ("with null-milter", null.port)],
                              e2e_reps, 400 if args.quick else 1500)
            if e2e is not None and e2e < TARGETS["e2e"]:
                missed.append("end to end: %.3f" % e2e)

        rep.add("## Summary")
        rep.add()
        rep.add("Targets missed: %s." % ("; ".join(missed) if missed else "none"))
        rep.add("Run took %.0f s; load average after: %.2f %.2f %.2f."
                % ((time.monotonic() - started,) + os.getloadavg()))
    finally:
        for d in reversed(daemons):
            try:
                d.stop()
            except Exception:
                pass
        shutil.rmtree(workdir, ignore_errors=True)

    with open(results_path, "w") as f:
        f.write("\n".join(rep.lines) + "\n")
    print("written to %s" % results_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
