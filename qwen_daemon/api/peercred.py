"""Who is on the other end of the socket: SO_PEERCRED, checked on every connection.

The socket file is 0660 and group-owned, which already keeps strangers out;
the peer check is the second lock (a socket fd passed on, a mode widened by
hand) and the record of who asked for what: launches, stops and class changes
are logged and audited with the peer's uid. Allowed: root, the daemon's own
user, and members of the socket's group.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct
from typing import NamedTuple

_UCRED = struct.Struct("3i")


class Peer(NamedTuple):
    pid: int
    uid: int
    gid: int

    def describe(self) -> str:
        try:
            user = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            user = str(self.uid)
        return f"{user} (uid {self.uid}, pid {self.pid})"


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return Peer(*_UCRED.unpack(raw))


class PeerPolicy:
    def __init__(self, gid: int | None) -> None:
        self.gid = os.getegid() if gid is None else gid
        self.uids = {0, os.geteuid()}

    def _member(self, uid: int) -> bool:
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return False
        return self.gid in os.getgrouplist(entry.pw_name, entry.pw_gid)

    def refusal(self, peer: Peer) -> str | None:
        """None if `peer` may use the daemon; otherwise why not and what to do."""
        if peer.uid in self.uids or peer.gid == self.gid or self._member(peer.uid):
            return None
        try:
            group = grp.getgrgid(self.gid).gr_name
        except KeyError:
            group = str(self.gid)
        return f"uid {peer.uid} may not use this daemon: add the user to group {group!r} (the socket's group)"
