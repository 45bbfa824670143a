"""Privileges: started as root with -u, the daemon opens its socket, then
runs as that user (/proc/PID/status), with the unix socket's mode and
owner as configured; a reload still reads the policy afterwards.  Uses
the system's nobody/nogroup and postfix accounts; creates none.
Run through privilege.test.
"""

import grp
import os
import pwd
import stat
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import milterproto as mp  # noqa: E402
import rig  # noqa: E402

REFUSED = "502 5.5.1 EXPN command not implemented"


def policy(mode):
    return ('socket_mode = "%s";\ncommands = { EXPN = { action = "reject"; }; };\n'
            'limits = { probes = 0; };\n' % mode)


RIG = None


def make_run_directory(r):
    # the socket's directory is root's: only root can create the socket there
    os.mkdir(os.path.join(r.workdir, "run"), 0o755)


h.share_per_module(globals(), "RIG", lambda: rig.started(policy("0660"), make_run_directory))


class PrivilegeTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if RIG is None:
            self.fail("the test environment is not running")
        self.mark = RIG.log.mark()

    def start(self, user, mode, name):
        path = os.path.join(RIG.workdir, "%s.conf" % name)
        RIG.write_policy(policy(mode), path)
        sock = os.path.join(RIG.workdir, "run", "%s.sock" % name)
        m = RIG.milter(policy_path=path, socket="unix:" + sock, extra_args=["-u", user])
        # the socket listens before the drop: wait for the line logged after it
        rec = RIG.log.wait_for(lambda r: r.pid == m.pid and r.msg.startswith("listening on"),
                               since=self.mark, timeout=10)
        self.assertIsNotNone(rec, self.diag(m))
        return m, sock, path

    def diag(self, m):
        return "\n--- log ---\n%s\n--- output ---\n%s" % (
            RIG.log.excerpt(self.mark, pids={m.pid}), m.output())

    def assertIdentity(self, m, uid, gid):
        st = rig.status(m.pid)
        self.assertEqual(st["Uid"].split(), [str(uid)] * 4, "real, effective, saved, fs uid")
        self.assertEqual(st["Gid"].split(), [str(gid)] * 4, "real, effective, saved, fs gid")
        groups = {g.gr_gid for g in grp.getgrall() if pwd.getpwuid(uid).pw_name in g.gr_mem}
        self.assertEqual(set(map(int, st["Groups"].split())), groups | {gid})
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(st[cap], 16), 0, cap)

    def assertSocket(self, sock, uid, gid, mode):
        st = os.stat(sock)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (uid, gid, mode))

    def test_01_runs_as_nobody(self):
        """-u nobody:nogroup: all four uids and gids, groups, no capabilities; socket nobody:nogroup 0660."""
        nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        m, sock, path = self.start("nobody:nogroup", "0660", "nobody")
        self.assertIdentity(m, nobody, nogroup)
        self.assertSocket(sock, nobody, nogroup, 0o660)
        c = mp.MilterClient(sock).session()
        self.assertEqual(mp.reply_text(c.unknown("EXPN")), REFUSED)
        c.quit()
        # a reload after the drop reads the file as nobody
        mark = RIG.log.mark()
        m.reload()
        rec = RIG.log.wait_for(lambda r: r.pid == m.pid and "configuration reloaded" in r.msg,
                               since=mark, timeout=5)
        self.assertIsNotNone(rec, self.diag(m))
        # one nobody may not read: kept, and said so
        os.chmod(path, 0o600)
        mark = RIG.log.mark()
        m.reload()
        rec = RIG.log.wait_for(lambda r: r.pid == m.pid and "keeping previous" in r.msg,
                               since=mark, timeout=5)
        self.assertIsNotNone(rec, self.diag(m))
        self.assertEqual(rec.msg, "%s: cannot read: Permission denied; keeping previous "
                         "configuration" % path)
        c = mp.MilterClient(sock).session()
        self.assertEqual(mp.reply_text(c.unknown("EXPN")), REFUSED)
        c.quit()

    def test_02_socket_mode_and_group_reach_postfix(self):
        """-u nobody:postfix, socket_mode 0660: Postfix's smtpd (group postfix) gets through."""
        nobody, postfix = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("postfix").gr_gid
        m, sock, _ = self.start("nobody:postfix", "0660", "group")
        self.assertIdentity(m, nobody, postfix)
        self.assertSocket(sock, nobody, postfix, 0o660)
        pf = RIG.postfix(extra_main={"smtpd_milters": "unix:" + sock,
                                     "milter_default_action": "tempfail"})
        c = h.smtp_client(pf)
        try:
            c.connect()
            self.assertEqual(c.command("EXPN"), REFUSED, c.format_transcript() + self.diag(m))
            self.assertEqual(c.command("QUIT"), "221 2.0.0 Bye")
        finally:
            c.close()

    def test_03_socket_mode_0600(self):
        """socket_mode 0600 and -u nobody (its own group): nobody:nogroup 0600."""
        nobody = pwd.getpwnam("nobody")
        m, sock, _ = self.start("nobody", "0600", "private")
        self.assertIdentity(m, nobody.pw_uid, nobody.pw_gid)
        self.assertSocket(sock, nobody.pw_uid, nobody.pw_gid, 0o600)

    def test_04_unknown_user(self):
        """-u with a user that does not exist: exit 64 before anything is opened."""
        sock = os.path.join(RIG.workdir, "run", "none.sock")
        p = subprocess.run([h.milter_binary(), "-f", "-c", RIG.policy_path, "-p", "unix:" + sock,
                            "-u", "cmdgate-no-such-user"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual((p.returncode, p.stdout.decode()),
                         (64, "milter-cmdgate: -u cmdgate-no-such-user: no such user\n"))
        self.assertFalse(os.path.exists(sock))
