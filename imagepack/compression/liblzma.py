"""liblzma's one-call decoder of a whole .xz stream in memory, `lzma_stream_buffer_decode`, into a buffer the
caller owns. Python's lzma module has no such call: each `decompress` returns a new bytes object, grown in
pieces and then joined, so a 24 MiB block costs some 53 MiB of fresh memory, its page faults and a copy. Here a
block is decoded straight into a buffer used again for a later block; liblzma is the library Python's lzma
module is built on (public domain / 0BSD), loaded dynamically. ctypes lets go of the interpreter during the call,
so blocks decode on every core.

Where liblzma cannot be loaded, `buffer_decoder()` returns None and the caller decodes with Python's lzma."""

from __future__ import annotations

import ctypes
import functools
import lzma
from collections.abc import Callable
from typing import Any

# The sonames liblzma 5 is found under (Linux, then macOS).
_NAMES = ("liblzma.so.5", "liblzma.5.dylib")
_OK, _MEM_ERROR, _BUF_ERROR = 0, 5, 10
# liblzma's own words for each return value (lzma.h), as Python's lzma module words them.
_MESSAGES = {
    2: "No integrity check; not verifying file integrity",
    3: "Unsupported integrity check",
    6: "Memory usage limit was reached",
    7: "Input format not supported by decoder",
    8: "Invalid or unsupported options",
    9: "Corrupt input data",
    11: "Internal error",
}

# (stream, memlimit, out, size) -> bytes written into out[:size]
BufferDecoder = Callable[[bytearray, int, bytearray, int], int]

_Size = ctypes.c_size_t


@functools.cache
def buffer_decoder() -> BufferDecoder | None:
    """The function that decodes one whole .xz stream into a buffer, or None where liblzma cannot be loaded."""
    for name in _NAMES:
        try:
            library = ctypes.CDLL(name)
            decode = library.lzma_stream_buffer_decode
        except (OSError, AttributeError):
            continue
        decode.argtypes = [
            ctypes.POINTER(ctypes.c_uint64),  # memlimit (in, and what was needed when it is reached)
            ctypes.c_uint32,  # flags: none (no concatenated streams, nothing told but errors)
            ctypes.c_void_p,  # allocator: liblzma's own
            ctypes.c_void_p,  # in
            ctypes.POINTER(_Size),  # in_pos
            _Size,  # in_size
            ctypes.c_void_p,  # out
            ctypes.POINTER(_Size),  # out_pos
            _Size,  # out_size
        ]
        decode.restype = ctypes.c_int
        return functools.partial(_decode, decode)
    return None


def _decode(decode: Callable[..., Any], stream: bytearray, memlimit: int, out: bytearray, size: int) -> int:
    """Decode the whole .xz stream `stream` into the first `size` bytes of `out`; returns the bytes written.
    Raises lzma.LZMAError when the stream is damaged or cut short, needs more than `memlimit`, or decodes to more
    than `size` bytes (nothing past them is written), and MemoryError when liblzma cannot allocate its state."""
    limit = ctypes.c_uint64(memlimit)
    in_pos, out_pos = _Size(0), _Size(0)
    source = (ctypes.c_char * len(stream)).from_buffer(stream)
    target = (ctypes.c_char * size).from_buffer(out)
    try:
        status = decode(
            ctypes.byref(limit), 0, None, ctypes.addressof(source), ctypes.byref(in_pos), len(stream),
            ctypes.addressof(target), ctypes.byref(out_pos), size,
        )  # fmt: skip
    finally:
        del source, target  # the buffers may be resized again once nothing exports them
    if status == _OK:
        return out_pos.value
    if status == _MEM_ERROR:
        raise MemoryError("liblzma could not allocate its decoder")
    if status == _BUF_ERROR:  # liblzma leaves the positions as they were on an error: either could have run out
        raise lzma.LZMAError(f"the stream ends before its end, or decodes to more than the {size} bytes it should")
    raise lzma.LZMAError(_MESSAGES.get(status, f"liblzma error {status}"))
