"""A small NBD client for one read-only export: the fixed newstyle handshake, NBD_OPT_GO, structured replies,
NBD_CMD_READ and NBD_CMD_BLOCK_STATUS on base:allocation (which regions read as zeroes, to skip them unread).

The protocol is the NBD project's doc/proto.md; everything is big-endian."""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass

from imagepack.core.errors import ImagepackError

_NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
_IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
_OPT_REPLY_MAGIC = 0x3E889045565A9
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY_MAGIC = 0x67446698
_STRUCTURED_REPLY_MAGIC = 0x668E33EF

_FLAG_FIXED_NEWSTYLE = 1 << 0
_FLAG_NO_ZEROES = 1 << 1

_OPT_GO = 7
_OPT_STRUCTURED_REPLY = 8
_OPT_SET_META_CONTEXT = 10
_REP_ACK = 1
_REP_INFO = 3
_REP_META_CONTEXT = 4
_REP_ERROR_BIT = 1 << 31
_INFO_EXPORT = 0

_CMD_READ = 0
_CMD_DISC = 2
_CMD_BLOCK_STATUS = 7
_CMD_FLAG_DF = 1 << 2  # one data chunk per read, never split into data and holes

_REPLY_FLAG_DONE = 1 << 0
_REPLY_TYPE_NONE = 0
_REPLY_TYPE_OFFSET_DATA = 1
_REPLY_TYPE_OFFSET_HOLE = 2
_REPLY_TYPE_BLOCK_STATUS = 5
_REPLY_TYPE_ERROR_BIT = 1 << 15

_STATE_ZERO = 1 << 1  # base:allocation: the region reads as zeroes

BASE_ALLOCATION = b"base:allocation"
MAX_REPLY = 64 * 1024**2  # qemu-nbd answers at most 32 MiB a request; anything bigger is not a reply of ours


class NbdError(ImagepackError):
    """The NBD server broke the protocol or refused a request."""

    code = "nbd"


@dataclass(frozen=True)
class Extent:
    offset: int
    length: int
    zero: bool  # reads as zeroes: nothing to read or write


class NbdClient:
    """One connection to a read-only export, on a connected stream socket the client then owns (and closes). The
    handshake waits `timeout` seconds at most for each answer; requests wait as long as they take. Not
    thread-safe: one request at a time."""

    def __init__(self, sock: socket.socket, *, timeout: float | None = None) -> None:
        self._sock = sock
        try:
            self._sock.settimeout(timeout)
            self.size, self._context = self._handshake()
            self._sock.settimeout(None)
        except BaseException:
            self._sock.close()
            raise
        self._cookie = 0

    @classmethod
    def adopt(cls, sock: socket.socket, size: int, context: int) -> NbdClient:
        """A client on a connection another process has already negotiated (`handover`): a child of ours that
        parses what is read, given the connection as an inherited descriptor."""
        client = cls.__new__(cls)
        client._sock, client.size, client._context, client._cookie = sock, size, context, 0
        return client

    def handover(self) -> tuple[int, int, int]:
        """(descriptor, size, meta context id): what `adopt` needs to go on in another process. Until that process
        ends, this client must not be used (one request at a time on one connection)."""
        return self._sock.fileno(), self.size, self._context

    def __enter__(self) -> NbdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the server may be gone already; closing is all that is left
            self._sock.sendall(struct.pack(">IHHQQI", _REQUEST_MAGIC, 0, _CMD_DISC, 0, 0, 0))
        self._sock.close()

    def _recv(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self._sock.recv_into(view[got:], n - got)
            if k == 0:
                raise NbdError("the NBD server closed the connection")
            got += k
        return bytes(buf)

    def _send_option(self, option: int, data: bytes = b"") -> None:
        self._sock.sendall(struct.pack(">QII", _IHAVEOPT, option, len(data)) + data)

    def _option_reply(self, option: int) -> tuple[int, bytes]:
        magic, opt, kind, length = struct.unpack(">QIII", self._recv(20))
        if magic != _OPT_REPLY_MAGIC or opt != option or length > MAX_REPLY:
            raise NbdError("the NBD server's option reply is malformed")
        data = self._recv(length)
        if kind & _REP_ERROR_BIT:
            message = data.decode("utf-8", "replace") or f"error {kind & ~_REP_ERROR_BIT}"
            raise NbdError(f"the NBD server refused option {option}: {message}")
        return kind, data

    def _handshake(self) -> tuple[int, int]:
        magic, opt_magic, flags = struct.unpack(">QQH", self._recv(18))
        if magic != _NBDMAGIC or opt_magic != _IHAVEOPT or not flags & _FLAG_FIXED_NEWSTYLE:
            raise NbdError("the NBD server does not speak the fixed newstyle protocol")
        self._sock.sendall(struct.pack(">I", _FLAG_FIXED_NEWSTYLE | (flags & _FLAG_NO_ZEROES)))
        self._send_option(_OPT_STRUCTURED_REPLY)
        self._option_reply(_OPT_STRUCTURED_REPLY)
        export = b""  # qemu-nbd's default export name
        query = struct.pack(">I", len(export)) + export + struct.pack(">II", 1, len(BASE_ALLOCATION)) + BASE_ALLOCATION
        self._send_option(_OPT_SET_META_CONTEXT, query)
        context = None
        while True:
            kind, data = self._option_reply(_OPT_SET_META_CONTEXT)
            if kind == _REP_ACK:
                break
            if kind == _REP_META_CONTEXT and data[4:] == BASE_ALLOCATION:
                (context,) = struct.unpack(">I", data[:4])
        if context is None:
            raise NbdError("the NBD server offers no base:allocation context")
        self._send_option(_OPT_GO, struct.pack(">I", len(export)) + export + struct.pack(">H", 0))
        size = None
        while True:
            kind, data = self._option_reply(_OPT_GO)
            if kind == _REP_ACK:
                break
            if kind == _REP_INFO and len(data) >= 12 and struct.unpack(">H", data[:2])[0] == _INFO_EXPORT:
                size = struct.unpack(">Q", data[2:10])[0]
        if size is None:
            raise NbdError("the NBD server did not say the export's size")
        return size, context

    def _request(self, command: int, offset: int, length: int, flags: int = 0) -> int:
        self._cookie += 1
        self._sock.sendall(struct.pack(">IHHQQI", _REQUEST_MAGIC, flags, command, self._cookie, offset, length))
        return self._cookie

    def _chunks(self, cookie: int) -> list[tuple[int, bytes]]:
        """The reply chunks to one request, (type, payload) each, until the server says it is done."""
        chunks: list[tuple[int, bytes]] = []
        while True:
            (magic,) = struct.unpack(">I", self._recv(4))
            if magic == _SIMPLE_REPLY_MAGIC:
                error, handle = struct.unpack(">IQ", self._recv(12))
                if handle != cookie:
                    raise NbdError("the NBD server answered another request")
                if error:
                    raise NbdError(f"the NBD server failed a request (error {error})")
                return chunks
            if magic != _STRUCTURED_REPLY_MAGIC:
                raise NbdError("the NBD server's reply is malformed")
            flags, kind, handle, length = struct.unpack(">HHQI", self._recv(16))
            if handle != cookie or length > MAX_REPLY:
                raise NbdError("the NBD server's reply is malformed")
            payload = self._recv(length)
            if kind & _REPLY_TYPE_ERROR_BIT:
                error = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else 0
                message = payload[6:].decode("utf-8", "replace")
                raise NbdError(f"the NBD server failed a request (error {error}{': ' + message if message else ''})")
            if kind != _REPLY_TYPE_NONE:
                chunks.append((kind, payload))
            if flags & _REPLY_FLAG_DONE:
                return chunks

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes of the guest disk from `offset`."""
        cookie = self._request(_CMD_READ, offset, length, _CMD_FLAG_DF)
        buf = bytearray(length)
        filled = 0
        for kind, payload in self._chunks(cookie):
            if kind == _REPLY_TYPE_OFFSET_DATA:
                (at,) = struct.unpack(">Q", payload[:8])
                data = memoryview(payload)[8:]
                start = at - offset
                if start < 0 or start + len(data) > length:
                    raise NbdError("the NBD server sent data outside the read")
                buf[start : start + len(data)] = data
                filled += len(data)
            elif kind == _REPLY_TYPE_OFFSET_HOLE:
                at, hole = struct.unpack(">QI", payload[:12])
                if at < offset or at - offset + hole > length:
                    raise NbdError("the NBD server sent a hole outside the read")
                filled += hole  # the buffer is zeroes already
        if filled != length:
            raise NbdError(f"the NBD server sent {filled} bytes for a read of {length}")
        return bytes(buf)

    def extents(self, offset: int, length: int) -> list[Extent]:
        """How the region from `offset` is allocated, as the server sees it: at least one extent, in order, not
        past the region (the server may describe less than asked)."""
        cookie = self._request(_CMD_BLOCK_STATUS, offset, length)
        found: list[Extent] = []
        for kind, payload in self._chunks(cookie):
            if kind != _REPLY_TYPE_BLOCK_STATUS or struct.unpack(">I", payload[:4])[0] != self._context:
                continue
            at = offset
            for i in range(4, len(payload) - 7, 8):
                size, state = struct.unpack(">II", payload[i : i + 8])
                size = min(size, offset + length - at)
                if size <= 0:
                    break
                found.append(Extent(at, size, bool(state & _STATE_ZERO)))
                at += size
        if not found:
            raise NbdError("the NBD server described no part of the region asked for")
        return found
