"""The child process that reads a guest disk (run.py starts it under limits): `python -m imagepack.sources.guest.child
FD SIZE CONTEXT` goes on with the NBD connection its parent negotiated (descriptor FD), and prints the report as
one JSON object on stdout. Guest file systems are parsed by C code: whatever they do, it happens here, bounded."""

from __future__ import annotations

import json
import os
import socket
import sys

from imagepack.sources.guest.analyse import analyse  # the file system readers: only this process loads them
from imagepack.sources.guest.exits import EXIT_MEMORY, EXIT_NBD
from imagepack.tools.nbd.client import NbdClient, NbdError


def main(argv: list[str]) -> int:

    fd, size, context = (int(value) for value in argv)
    client = NbdClient.adopt(socket.socket(fileno=fd), size, context)
    try:
        report = analyse(client)
    except MemoryError:
        os.write(2, b"out of memory\n")
        return EXIT_MEMORY
    except NbdError as e:
        print(str(e), file=sys.stderr)
        return EXIT_NBD
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
