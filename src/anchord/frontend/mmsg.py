"""Linux recvmmsg(2)/sendmmsg(2) for one UDP socket, through ctypes on libc.

Why: on cached answers the fast path leaves little besides the two system calls per
datagram (recvfrom and sendto through the event loop), and those alone cost more than
a whole answer costs Unbound. recvmmsg reads up to `batch` datagrams with one call and
sendmmsg sends up to `batch` replies with one, so the per-call cost is paid once per
batch. Python's socket module has neither call, hence ctypes (stdlib; no compiled
extension to build or ship). Where either is missing (not Linux, no libc, an old
kernel) `MmsgSocket.open` returns None and the caller keeps the asyncio endpoint.

Everything is allocated once per socket: the mmsghdr arrays, the iovecs, the address
slots and the data buffers. The hot loop touches them through one memoryview with
precompiled struct formats (a ctypes attribute access costs several times more), so no
ctypes object is made per datagram; ctypes is entered only for the two calls.

Layout (one `hdrs` buffer): recv mmsghdr[batch] | send mmsghdr[batch] | address slot[batch]
| recv iovec[batch] | send iovec[batch]. An address slot is as long as an mmsghdr, so
slot i lies a fixed distance after receive header i and one struct unpack reads a
datagram's flags, length and sender address together. Receive buffers are 65535 bytes (the largest
UDP payload; a datagram never arrives cut), send buffers 4096 (a fast-path reply is at
most 1232 bytes; anything larger goes out through sendto). The buffers come from
ctypes, which allocates them zeroed by calloc: pages the kernel never writes into are
never made resident, so the 4 MiB of receive space cost what is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import struct
import sys
from typing import Any

RECV_SIZE = 65535  # the largest UDP payload: no datagram is ever cut
SEND_SIZE = 4096  # fast-path replies; a larger one is sent on its own
# Receive slots are RECV_SIZE apart plus one cache line, so the first lines of the 64
# buffers (the only part a query touches) do not all fall into the same cache set.
_RECV_STRIDE = 65536 + 64
MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0x20)
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),  # socklen_t
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_MM = ctypes.sizeof(_Mmsghdr)
_IOV = ctypes.sizeof(_Iovec)
_PTR = ctypes.sizeof(ctypes.c_void_p)
_SIZE_T = ctypes.sizeof(ctypes.c_size_t)


def _code(size: int, signed: bool = False) -> str:
    code = {4: "i", 8: "q", 2: "h"}[size]
    return code if signed else code.upper()


def _fields(*fields: tuple[int, str]) -> struct.Struct:
    """A native-endian, unaligned struct of (offset, code) fields with pads between."""
    fmt, at = "=", 0
    for offset, code in fields:
        if offset > at:
            fmt += f"{offset - at}x"
        fmt += code
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt)


_NAME = _Msghdr.msg_name.offset
_NAMELEN = _Msghdr.msg_namelen.offset
_IOVP = _Msghdr.msg_iov.offset
_IOVLEN = _Msghdr.msg_iovlen.offset
_FLAGS = _Msghdr.msg_flags.offset
_LEN = _Mmsghdr.msg_len.offset
_U32 = _code(4)
_PTRC = _code(_PTR)
_SIZEC = _code(_SIZE_T)
# A whole msghdr as written once at set-up: name, namelen, iov, iovlen (the rest zero).
_HDR = _fields((_NAME, _PTRC), (_NAMELEN, _U32), (_IOVP, _PTRC), (_IOVLEN, _SIZEC))
# What sendmmsg needs per reply: where to (name, namelen).
_TO = _fields((_NAME, _PTRC), (_NAMELEN, _U32))
_IOVEC = _fields((_Iovec.iov_base.offset, _PTRC), (_Iovec.iov_len.offset, _SIZEC))
_IOV_LEN = _Iovec.iov_len.offset
_SIZE = struct.Struct("=" + _SIZEC)


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                     ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def available() -> bool:
    """recvmmsg and sendmmsg can be called (Linux with a libc that has them)."""
    return _LIBC is not None


def address_layout(family: int) -> tuple[int, int, int]:
    """(sockaddr size, offset, length) of the host part inside the sockaddr."""
    if family == socket.AF_INET:
        return 16, 4, 4  # sockaddr_in: family, port, in_addr, zero
    return 28, 8, 16  # sockaddr_in6: family, port, flowinfo, in6_addr, scope_id


def sockaddr_to_tuple(raw: bytes, family: int) -> tuple[Any, ...]:
    """The (host, port[, flowinfo, scope_id]) tuple socket.recvfrom would have given."""
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    flowinfo = int.from_bytes(raw[4:8], "big")
    scope = int.from_bytes(raw[24:28], sys.byteorder)
    host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    if scope and (raw[8] == 0xFE and raw[9] & 0xC0 == 0x80):  # link-local: name the link
        try:
            host += "%" + socket.if_indextoname(scope)
        except OSError:
            host += f"%{scope}"
    return host, port, flowinfo, scope



class MmsgSocket:
    """Batched reads and writes on one non-blocking UDP socket (see the module doc).

    Per readable event: n = recv(); read(n) gives each datagram's (host, payload,
    truncated); queue(i, reply) for the replies; flush(). A slot is valid until the
    next recv().
    """

    def __init__(self, sock: socket.socket, libc: Any, batch: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.batch = batch
        self._recvmmsg = libc.recvmmsg
        self._sendmmsg = libc.sendmmsg
        self.namelen, host_at, host_len = address_layout(sock.family)
        b = batch
        self._send_hdrs = b * _MM
        self._names = 2 * b * _MM  # address slot i: _names + i * _MM (see the layout)
        self._recv_iov = 3 * b * _MM
        self._send_iov = self._recv_iov + b * _IOV
        total = self._send_iov + b * _IOV
        # ctypes memory (calloc'd, see the module doc), reached through memoryviews.
        self._hdr_mem = (ctypes.c_char * total)()
        self._rbuf_mem = (ctypes.c_char * (b * _RECV_STRIDE))()
        self._sbuf_mem = (ctypes.c_char * (b * SEND_SIZE))()
        self.hdrs = memoryview(self._hdr_mem).cast("B")
        self.rbuf = memoryview(self._rbuf_mem).cast("B")
        self.sbuf = memoryview(self._sbuf_mem).cast("B")
        self._base = base = ctypes.addressof(self._hdr_mem)
        rbase = ctypes.addressof(self._rbuf_mem)
        sbase = ctypes.addressof(self._sbuf_mem)
        for i in range(b):
            _HDR.pack_into(self.hdrs, i * _MM, base + self._names + i * _MM, self.namelen,
                           base + self._recv_iov + i * _IOV, 1)
            _IOVEC.pack_into(self.hdrs, self._recv_iov + i * _IOV, rbase + i * _RECV_STRIDE,
                             RECV_SIZE)
            _HDR.pack_into(self.hdrs, self._send_hdrs + i * _MM, 0, 0,
                           base + self._send_iov + i * _IOV, 1)
            _IOVEC.pack_into(self.hdrs, self._send_iov + i * _IOV, sbase + i * SEND_SIZE, 0)
        # The receive headers as set up, copied back over the used ones before each
        # read: the kernel writes msg_namelen, msg_flags and msg_len.
        self._pristine = bytes(self.hdrs[:b * _MM])
        self._used = b
        # One unpack per datagram: flags and length from its mmsghdr, the sender's host
        # bytes from its address slot.
        self._meta = _fields((_FLAGS, "i"), (_LEN, _U32),
                             (self._names + host_at, f"{host_len}s"))
        self._pending: list[tuple[int, int]] = []  # (receive slot, reply length)
        self.send_errors = 0  # replies the kernel refused for good (counted, not raised)

    @classmethod
    def open(cls, sock: socket.socket, batch: int = 64) -> MmsgSocket | None:
        """A batched view of `sock` (non-blocking, AF_INET or AF_INET6, SOCK_DGRAM);
        None where recvmmsg/sendmmsg cannot be used."""
        if _LIBC is None or sock.family not in (socket.AF_INET, socket.AF_INET6) \
                or sock.type != socket.SOCK_DGRAM:
            return None
        return cls(sock, _LIBC, batch)

    # -- reading --------------------------------------------------------------------------

    def recv(self) -> int:
        """Read up to `batch` datagrams without blocking: how many (0: none waiting).
        Raises OSError for an error other than EAGAIN/EINTR."""
        used = self._used * _MM
        self.hdrs[:used] = self._pristine[:used]
        n: int = self._recvmmsg(self.fd, self._base, self.batch, MSG_DONTWAIT, None)
        if n < 0:
            self._used = 0
            err = ctypes.get_errno()
            if err in _AGAIN or err == errno.EINTR:
                return 0
            raise OSError(err, os.strerror(err))
        self._used = n
        return n

    def read(self, n: int) -> list[tuple[bytes, bytes, bool]]:
        """(sender host bytes, payload, cut short) of the first n datagrams received.
        The host bytes are the raw address without the port (a cache key, no string)."""
        meta = self._meta.unpack_from
        hdrs, rbuf = self.hdrs, self.rbuf
        out = []
        for i in range(n):
            flags, length, host = meta(hdrs, i * _MM)
            o = i * _RECV_STRIDE
            out.append((host, rbuf[o:o + length].tobytes(), bool(flags & MSG_TRUNC)))
        return out

    def sockaddr(self, i: int) -> bytes:
        """The raw sockaddr of datagram i's sender."""
        o = self._names + i * _MM
        return self.hdrs[o:o + self.namelen].tobytes()

    def address(self, i: int) -> tuple[Any, ...]:
        """Datagram i's sender as the (host, port, ...) tuple recvfrom would give."""
        return sockaddr_to_tuple(self.sockaddr(i), self.family)

    # -- writing --------------------------------------------------------------------------

    def queue(self, i: int, reply: bytes) -> bool:
        """Queue `reply` to datagram i's sender for flush(); False if it does not fit a
        send buffer (send it another way then)."""
        pending = self._pending
        k = len(pending)
        n = len(reply)
        if n > SEND_SIZE or k >= self.batch:
            return False
        o = k * SEND_SIZE
        self.sbuf[o:o + n] = reply
        pending.append((i, n))
        return True

    def flush(self) -> list[tuple[bytes, bytes]]:
        """Send every queued reply with as few sendmmsg calls as the kernel allows.

        A partial send (fewer sent than asked) is retried for the rest. Returns what
        could not be sent because the socket buffer is full (EAGAIN), as (reply, raw
        sockaddr) pairs for the caller to send later; a reply the kernel refuses for any
        other reason is counted in send_errors and skipped, as the asyncio transport
        does (it reports the error to error_received and goes on).
        """
        pending = self._pending
        if not pending:
            return []
        hdrs, sh, si = self.hdrs, self._send_hdrs, self._send_iov + _IOV_LEN
        names, namelen = self._base + self._names, self.namelen
        to, size = _TO.pack_into, _SIZE.pack_into
        for k, (i, n) in enumerate(pending):
            to(hdrs, sh + k * _MM, names + i * _MM, namelen)
            size(hdrs, si + k * _IOV, n)
        total = len(pending)
        done = 0
        left: list[tuple[bytes, bytes]] = []
        while done < total:
            sent: int = self._sendmmsg(self.fd, self._base + sh + done * _MM, total - done,
                                       MSG_DONTWAIT)
            if sent > 0:
                done += sent  # a partial send: go on with the rest
                continue
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in _AGAIN:
                for k in range(done, total):
                    i, n = pending[k]
                    left.append((self.sbuf[k * SEND_SIZE:k * SEND_SIZE + n].tobytes(),
                                 self.sockaddr(i)))
                break
            self.send_errors += 1  # this one reply cannot go (e.g. EPERM): skip it
            done += 1
        pending.clear()
        return left


__all__ = ["MmsgSocket", "available", "sockaddr_to_tuple", "address_layout",
           "RECV_SIZE", "SEND_SIZE", "MSG_TRUNC"]
