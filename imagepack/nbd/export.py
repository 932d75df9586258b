"""A read-only qemu-nbd export of a source image on a private Unix socket, for the length of one step."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from imagepack.errors import QemuImgError
from imagepack.nbd.client import NbdClient
from imagepack.problems import Remedy
from imagepack.process import spawn
from imagepack.qemu import ImageRef, find_qemu_img

START_SECONDS = 30.0  # qemu-nbd opens the image before it listens; a healthy one does so in well under a second


def find_qemu_nbd() -> str:
    """qemu-nbd: IMAGEPACK_QEMU_NBD, else the one beside the qemu-img in use (same build), else PATH."""
    wanted = os.environ.get("IMAGEPACK_QEMU_NBD")
    beside = str(Path(find_qemu_img().path).parent)
    path = shutil.which(wanted) if wanted else (shutil.which("qemu-nbd", path=beside) or shutil.which("qemu-nbd"))
    if not path:
        where = f"IMAGEPACK_QEMU_NBD={wanted} is not an executable" if wanted else "qemu-nbd is not installed"
        raise QemuImgError(
            f"{where} (imagepack's stream-optimized vmdk writer reads the source through it); "
            "install qemu-utils (Debian/Ubuntu) or qemu-img (Fedora/RHEL), or point IMAGEPACK_QEMU_NBD at it",
            remedy=Remedy.QEMU_STREAM_WRITER,
        )
    return path


@contextlib.contextmanager
def exported(image: ImageRef) -> Iterator[NbdClient]:
    """A client connected to a read-only export of `image`; qemu-nbd is killed when the block ends, however it
    ends, and its socket directory removed."""
    with tempfile.TemporaryDirectory(prefix="imagepack-nbd-") as tmp:
        sock = os.path.join(tmp, "export.sock")
        argv = [
            find_qemu_nbd(),
            "--read-only",
            "--persistent",  # stays until we kill it: a failed first connection must not end it
            "--shared=1",
            f"--socket={sock}",
            *image.args(),  # an opened input as the descriptor qemu-nbd inherits, with no backing file
        ]
        with spawn(argv) as service:
            client = _connect(sock, service.poll, service.stderr)
            with client:
                yield client


def _connect(sock: str, exited: Callable[[], int | None], stderr: Callable[[], str]) -> NbdClient:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if exited() is not None:
            text = stderr().strip().splitlines()
            why = text[-1].removeprefix("qemu-nbd: ") if text else "no message"
            raise QemuImgError(f"qemu-nbd could not export the source: {why}", detail=stderr())
        if os.path.exists(sock):
            with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
                return NbdClient(sock)
        if time.monotonic() > deadline:
            raise QemuImgError(f"qemu-nbd did not start listening within {START_SECONDS:.0f} s")
        time.sleep(0.01)
