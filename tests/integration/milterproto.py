"""A raw MTA side of the milter protocol (version 6), for fault tests.

Speaks just enough to open a session the way Postfix does (option
negotiation, connect-stage macros, connect, HELO, unknown command, quit)
and to misbehave on purpose: hang up in mid-packet, send garbage.  It is
the cheapest way to hold thousands of milter sessions open at once.
Standard library only.
"""

import socket
import struct

# commands (MTA -> milter) and replies (milter -> MTA), from libmilter/mfdef.h
OPTNEG, MACRO, CONNECT, HELO, UNKNOWN, QUIT, ABORT = b"O", b"D", b"C", b"H", b"U", b"Q", b"A"
CONTINUE, REJECT, TEMPFAIL, REPLYCODE = b"c", b"r", b"t", b"y"

VERSION = 6
ACTIONS = 0x1FF
# every step, but no "no reply" flags: each command gets an answer
PROTOCOL = 0x0000007F | 0x00000100 | 0x00000200 | 0x00000400


class MilterError(Exception):
    pass


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def _family_and_address(addr):
    if addr is None:
        return b"U"  # unknown: no port, no address
    family = b"6" if ":" in addr else b"4"
    return family + struct.pack(">H", 25) + addr.encode() + b"\0"


class MilterClient:
    """One milter connection; TARGET is ("127.0.0.1", port) or a unix path."""

    def __init__(self, target, timeout=10.0):
        self.target = target
        self.timeout = timeout
        self.sock = None
        self._buf = b""

    def open(self):
        if isinstance(self.target, str):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.target)
        return self

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, cmd, data=b""):
        self.sock.sendall(packet(cmd, data))

    def recv(self):
        """One reply packet: (command byte, data)."""
        while True:
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if len(self._buf) >= 4 + n:
                    body, self._buf = self._buf[4:4 + n], self._buf[4 + n:]
                    return body[:1], body[1:]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MilterError("milter closed the connection")
            self._buf += chunk

    def negotiate(self):
        self.send(OPTNEG, struct.pack(">III", VERSION, ACTIONS, PROTOCOL))
        cmd, data = self.recv()
        if cmd != OPTNEG:
            raise MilterError("expected an option negotiation reply, got %r" % cmd)
        return data

    def connect(self, client="192.0.2.7", name="probe.example", macros=None):
        """Connect-stage macros, then the connect event; returns the reply."""
        macros = macros if macros is not None else {
            "j": "mx.example", "v": "Postfix 3.7.11", "{daemon_name}": "smtpd",
            "_": "%s [%s]" % (name, client), "{client_addr}": client or "",
            "{client_name}": name}
        data = CONNECT + b"".join(k.encode() + b"\0" + v.encode() + b"\0"
                                  for k, v in macros.items())
        self.send(MACRO, data)
        self.send(CONNECT, name.encode() + b"\0" + _family_and_address(client))
        return self.recv()

    def helo(self, name):
        self.send(HELO, (name.encode() if isinstance(name, str) else name) + b"\0")
        return self.recv()

    def unknown(self, line):
        self.send(UNKNOWN, (line.encode() if isinstance(line, str) else line) + b"\0")
        return self.recv()

    def quit(self):
        self.send(QUIT)
        self.close()

    def session(self, client="192.0.2.7", helo="probe.example"):
        """Negotiate, connect and HELO: a session ready for unknown commands."""
        self.open()
        self.negotiate()
        cmd, _ = self.connect(client=client)
        if cmd != CONTINUE:
            raise MilterError("connect answered %r" % cmd)
        if helo is not None:
            cmd, _ = self.helo(helo)
            if cmd != CONTINUE:
                raise MilterError("HELO answered %r" % cmd)
        return self


def reply_text(reply):
    """The SMTP line of a REPLYCODE answer ("502 5.5.1 ..."), else the command byte."""
    cmd, data = reply
    if cmd == REPLYCODE:
        return data.rstrip(b"\0").decode("utf-8", "replace")
    return cmd.decode()
