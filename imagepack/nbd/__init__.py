"""Reading a guest disk through qemu-nbd: qemu's own drivers decode the source, imagepack only reads the bytes."""

from imagepack.nbd.client import Extent, NbdClient, NbdError
from imagepack.nbd.export import exported

__all__ = ["Extent", "NbdClient", "NbdError", "exported"]
