"""A read-only qemu-nbd export of a source image, for the length of one step, on a listening socket we create and
hand to qemu-nbd (systemd's socket activation, which qemu-nbd speaks): we are connected before qemu-nbd starts,
nothing waits for a socket file to appear, no path length limits where TMPDIR may be, and nothing is left on disk
whatever happens to either process. qemu-nbd dies with us (process.spawn), which frees the source's lock."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from imagepack.core.errors import QemuImgError
from imagepack.core.problems import Remedy
from imagepack.core.process import Running, spawn
from imagepack.tools.nbd.client import NbdClient, NbdError
from imagepack.tools.programs import Program, find_program
from imagepack.tools.qemu_img import ImageRef, find_qemu_img

QEMU_NBD = Program(("qemu-nbd",), variable="IMAGEPACK_QEMU_NBD")
START_SECONDS = 30.0  # qemu-nbd opens the image before it answers; a healthy one does so in well under a second

# Socket activation wants the socket at descriptor 3 and LISTEN_PID naming the server's own pid, which only the
# child knows: a few lines of Python, started with the socket as stdin, put both in place and exec qemu-nbd (same
# pid). A descriptor 3 already open (inherited) is not overwritten: the server would serve the wrong thing.
_ACTIVATE = """import os, sys
try:
    os.fstat(3)
except OSError:
    pass
else:
    sys.exit("qemu-nbd: descriptor 3 is already in use; the listening socket cannot be passed")
os.dup2(0, 3)
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.environ.pop("LISTEN_FDNAMES", None)
os.execv(sys.argv[1], sys.argv[1:])
"""


def find_qemu_nbd() -> str:
    """qemu-nbd: IMAGEPACK_QEMU_NBD, else the one beside the qemu-img in use (same build), else PATH."""
    beside = Path(find_qemu_img().path).parent
    return find_program(QEMU_NBD, _missing, beside=beside)


def _missing(where: str) -> QemuImgError:
    return QemuImgError(
        f"{where} (imagepack reads through it a guest's file systems, and the source its stream-optimized vmdk "
        "writer writes from); install qemu-utils (Debian/Ubuntu) or qemu-img (Fedora/RHEL), or point "
        "IMAGEPACK_QEMU_NBD at it",
        remedy=Remedy.QEMU_STREAM_WRITER,
    )


@contextlib.contextmanager
def exported(image: ImageRef) -> Iterator[NbdClient]:
    """A client connected to a read-only export of `image`; qemu-nbd is killed when the block ends, however it
    ends, and dies with us if we are killed."""
    argv = [sys.executable, "-I", "-S", "-c", _ACTIVATE, find_qemu_nbd(), "--read-only", "--shared=1"]
    argv += image.args()  # an opened input as the descriptor qemu-nbd inherits, with no backing file
    listener, ours = _connected_pair()
    try:
        with listener, spawn(argv, stdin=listener.fileno()) as service:
            listener.close()  # qemu-nbd holds it now: if it ends, our connection is refused at once
            with _client(ours, service) as client:
                yield client
    finally:
        ours.close()


def _connected_pair() -> tuple[socket.socket, socket.socket]:
    """A listening Unix socket and a connection to it, waiting in its queue. The socket file lives for a moment
    in a private directory (0700: no one else can connect) and is gone before qemu-nbd starts. It is named
    through /proc/self/fd, so the name stays short however long TMPDIR is (a socket name has 107 bytes)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ours = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with tempfile.TemporaryDirectory(prefix="imagepack-nbd-") as tmp:
            folder = os.open(tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                name = f"/proc/self/fd/{folder}/s"
                listener.bind(name)
                listener.listen(1)
                ours.connect(name)
            finally:
                os.close(folder)
    except BaseException:
        listener.close()
        ours.close()
        raise
    return listener, ours


def _client(ours: socket.socket, service: Running) -> NbdClient:
    try:
        return NbdClient(ours, timeout=START_SECONDS)  # it owns the connection now
    except TimeoutError:
        raise QemuImgError(f"qemu-nbd did not answer within {START_SECONDS:.0f} s", detail=service.stderr()) from None
    except (OSError, NbdError):
        _wait_for_exit(service)  # it refused the connection because it failed: its own message says why
        text = service.stderr().strip().splitlines()
        why = text[-1].removeprefix("qemu-nbd: ") if text else "no message"
        raise QemuImgError(f"qemu-nbd could not export the source: {why}", detail=service.stderr()) from None


def _wait_for_exit(service: Running, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while service.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
