"""Reading a guest disk through qemu-nbd: qemu's own drivers decode the source, imagepack only reads the bytes."""

from imagepack.tools.nbd.client import Extent, NbdClient, NbdError
from imagepack.tools.nbd.export import exported

__all__ = ["Extent", "NbdClient", "NbdError", "exported"]
