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

Layout (one `hdrs` buffer): recv mmsghdr[batch] | send mmsghdr[batch] | slot[batch] |
recv iovec[2 * batch] | send iovec[2 * batch]. A slot is as long as an mmsghdr, so slot i
lies a fixed distance after receive header i and one struct unpack reads a datagram's
flags, length and sender address together. Slot i holds the sender's sockaddr and, at
ID_AT, the datagram's first two bytes (the DNS ID): each read is scattered over two
iovecs, the ID into the slot and the rest into a receive buffer. So the hot loop gets
the bytes after the ID (the fast path's lookup key) with one copy, and a reply goes out
as two iovecs again, the query's own ID bytes and the reply body after them: no ID is
handled in Python at all.

Receive buffers are 65535 bytes (the largest UDP payload: a datagram never arrives
cut), send buffers 4096 (a fast-path reply is at most 1232 bytes; a larger one is
handed back for sendto). The buffers are anonymous mappings (mmap), so pages the
kernel never writes into are never made resident: the 4 MiB of receive space cost what
is used, one page per slot for DNS queries. (ctypes' own arrays would not do: calloc
zeroes them by hand once the heap serves blocks that size, touching every page.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
import socket
import struct
import sys
from typing import Any

RECV_SIZE = 65535  # the largest UDP payload: no datagram is ever cut
SEND_SIZE = 4096  # fast-path replies; a larger one is sent on its own
# Receive slots are RECV_SIZE apart plus one cache line, so the first lines of the 64
# buffers (the only part a query touches) do not all fall into the same cache set.
RECV_STRIDE = 65536 + 64  # datagram i's bytes after the ID are at i * RECV_STRIDE in rbuf
# Plain ints: socket's constants are IntFlag members, and `flags & IntFlag` goes through
# the enum machinery (a measurable share of the hot loop when done per datagram).
MSG_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0x40))
MSG_TRUNC = int(getattr(socket, "MSG_TRUNC", 0x20))
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
HDR_SIZE = _MM  # receive header i is at i * HDR_SIZE in hdrs, its slot a fixed way on
ID_AT = 32  # the DNS ID's place in a slot, after the sockaddr (at most 28 bytes)
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
_IOV_BASE = _Iovec.iov_base.offset
_IOV_LEN = _Iovec.iov_len.offset
_SIZE = struct.Struct("=" + _SIZEC)
_POINTER = struct.Struct("=" + _PTRC)


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

    Per readable event: n = recv(); for datagram i < n, meta(hdrs, i * HDR_SIZE) gives
    (msg_flags, length, sender host bytes) and rbuf[i * RECV_STRIDE:][:length - 2] its
    bytes after the ID (wire(i, length): the whole datagram); send([(i, body), ...])
    answers datagrams with replies given without their first two bytes. Everything of
    a datagram is valid until the next recv().
    """

    def __init__(self, sock: socket.socket, libc: Any, batch: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.family = sock.family
        self.batch = b = batch
        self._recvmmsg = libc.recvmmsg
        self._sendmmsg = libc.sendmmsg
        self.namelen, host_at, host_len = address_layout(sock.family)
        self._send_hdrs = b * _MM
        self._slots = 2 * b * _MM  # slot i: _slots + i * _MM (see the layout)
        self._recv_iov = 3 * b * _MM
        self._send_iov = self._recv_iov + 2 * b * _IOV
        total = self._send_iov + 2 * b * _IOV
        # The headers in ctypes memory; the buffers in anonymous mappings (see the module
        # doc); all reached from Python through memoryviews.
        self._hdr_mem = (ctypes.c_char * total)()
        self._rbuf_map = mmap.mmap(-1, b * RECV_STRIDE)
        self._sbuf_map = mmap.mmap(-1, b * SEND_SIZE)
        self.hdrs = memoryview(self._hdr_mem).cast("B")
        self.rbuf = memoryview(self._rbuf_map)
        self.sbuf = memoryview(self._sbuf_map)
        self._base = base = ctypes.addressof(self._hdr_mem)
        rbase = ctypes.addressof(ctypes.c_char.from_buffer(self._rbuf_map))
        sbase = ctypes.addressof(ctypes.c_char.from_buffer(self._sbuf_map))
        hdrs = self.hdrs
        for i in range(b):
            slot = base + self._slots + i * _MM
            riov = self._recv_iov + 2 * i * _IOV
            siov = self._send_iov + 2 * i * _IOV
            _HDR.pack_into(hdrs, i * _MM, slot, self.namelen, base + riov, 2)
            _IOVEC.pack_into(hdrs, riov, slot + ID_AT, 2)
            _IOVEC.pack_into(hdrs, riov + _IOV, rbase + i * RECV_STRIDE, RECV_SIZE - 2)
            # Send header k is set up to answer datagram k, the usual case (every
            # datagram of a batch answered): its sender, its ID, then send buffer k.
            _HDR.pack_into(hdrs, self._send_hdrs + i * _MM, slot, self.namelen,
                           base + siov, 2)
            _IOVEC.pack_into(hdrs, siov, slot + ID_AT, 2)
            _IOVEC.pack_into(hdrs, siov + _IOV, sbase + i * SEND_SIZE, 0)
        # The receive headers as set up, copied back over the used ones before each
        # read: the kernel writes msg_namelen, msg_flags and msg_len.
        self._pristine = bytes(hdrs[:b * _MM])
        self._used = b
        self._dest = list(range(b))  # the datagram send header k answers now
        # One unpack per datagram: flags and length from its mmsghdr, the sender's host
        # bytes from its slot.
        self.meta = _fields((_FLAGS, "i"), (_LEN, _U32),
                            (self._slots + host_at, f"{host_len}s")).unpack_from
        self.send_errors = 0  # replies the kernel refused for good (counted, not raised)

    @classmethod
    def open(cls, sock: socket.socket, batch: int = 64) -> MmsgSocket | None:
        """A batched view of `sock` (non-blocking, AF_INET or AF_INET6, SOCK_DGRAM);
        None where recvmmsg/sendmmsg cannot be used."""
        if _LIBC is None or sock.family not in (socket.AF_INET, socket.AF_INET6) \
                or sock.type != socket.SOCK_DGRAM:
            return None
        # A libc can have the wrappers on a kernel (or a seccomp policy) without the
        # calls: ask for zero messages, which touches no datagram, and see.
        fd = sock.fileno()
        if _LIBC.recvmmsg(fd, None, 0, MSG_DONTWAIT, None) < 0 \
                or _LIBC.sendmmsg(fd, None, 0, MSG_DONTWAIT) < 0:
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

    def wire(self, i: int, length: int) -> bytes:
        """Datagram i as received (its `length` from meta)."""
        o = self._slots + i * _MM + ID_AT
        head = self.hdrs[o:o + min(length, 2)].tobytes()
        if length <= 2:
            return head
        o = i * RECV_STRIDE
        return head + self.rbuf[o:o + length - 2].tobytes()

    def read(self, n: int) -> list[tuple[bytes, bytes, bool]]:
        """(sender host bytes, datagram, cut short) of the first n datagrams received;
        the host bytes are the raw address without the port. (The hot loop in
        udpbatch.py reads meta and rbuf directly instead.)"""
        out = []
        for i in range(n):
            flags, length, host = self.meta(self.hdrs, i * _MM)
            out.append((host, self.wire(i, length), bool(flags & MSG_TRUNC)))
        return out

    def sockaddr(self, i: int) -> bytes:
        """The raw sockaddr of datagram i's sender."""
        o = self._slots + i * _MM
        return self.hdrs[o:o + self.namelen].tobytes()

    def address(self, i: int) -> tuple[Any, ...]:
        """Datagram i's sender as the (host, port, ...) tuple recvfrom would give."""
        return sockaddr_to_tuple(self.sockaddr(i), self.family)

    # -- writing --------------------------------------------------------------------------

    def send(self, replies: list[tuple[int, bytes]]) -> list[tuple[bytes, bytes]]:
        """Answer datagram i with its own ID followed by `body` (the reply without its
        first two bytes), for each (i, body), with as few sendmmsg calls as the kernel
        allows (a partial send is retried for the rest).

        Returns what was not sent, as (whole reply, raw sockaddr) pairs for the caller
        to send another way: replies larger than SEND_SIZE, and everything left when
        the send buffer is full (EAGAIN). A reply the kernel refuses for any other
        reason is counted in send_errors and skipped, as the asyncio transport does (it
        reports the error to error_received and goes on).
        """
        left: list[tuple[bytes, bytes]] = []
        hdrs, sbuf, size = self.hdrs, self.sbuf, _SIZE.pack_into
        sh, si, batch, dest = self._send_hdrs, self._send_iov, self.batch, self._dest
        k = 0
        for i, body in replies:
            n = len(body)
            if n > SEND_SIZE or k == batch:
                left.append((self._id(i) + body, self.sockaddr(i)))
                continue
            o = k * SEND_SIZE
            sbuf[o:o + n] = body
            size(hdrs, si + (2 * k + 1) * _IOV + _IOV_LEN, n)
            if dest[k] != i:
                self._aim(k, i)
            k += 1
        done = 0
        while done < k:
            sent: int = self._sendmmsg(self.fd, self._base + sh + done * _MM, k - done,
                                       MSG_DONTWAIT)
            if sent > 0:
                done += sent  # a partial send: go on with the rest
                continue
            err = ctypes.get_errno()
            if err == errno.EINTR:
                continue
            if err in _AGAIN:
                for j in range(done, k):
                    n = _SIZE.unpack_from(hdrs, si + (2 * j + 1) * _IOV + _IOV_LEN)[0]
                    left.append((self._id(dest[j]) + sbuf[j * SEND_SIZE:][:n].tobytes(),
                                 self.sockaddr(dest[j])))
                break
            self.send_errors += 1  # this one reply cannot go (e.g. EPERM): skip it
            done += 1
        return left

    def _aim(self, k: int, i: int) -> None:
        """Point send header k at datagram i: its sender and its ID."""
        slot = self._base + self._slots + i * _MM
        _TO.pack_into(self.hdrs, self._send_hdrs + k * _MM, slot, self.namelen)
        _POINTER.pack_into(self.hdrs, self._send_iov + 2 * k * _IOV + _IOV_BASE, slot + ID_AT)
        self._dest[k] = i

    def _id(self, i: int) -> bytes:
        o = self._slots + i * _MM + ID_AT
        return self.hdrs[o:o + 2].tobytes()


__all__ = ["MmsgSocket", "available", "sockaddr_to_tuple", "address_layout",
           "RECV_SIZE", "SEND_SIZE", "MSG_TRUNC", "HDR_SIZE", "RECV_STRIDE", "ID_AT"]
