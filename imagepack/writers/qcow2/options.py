"""Which qcow2 create options imagepack's compressed qcow2 writer writes itself: version 3 (compat 1.1), 64 KiB
clusters, 16-bit refcounts, either cluster codec. Any other layout asked for (compat 0.10, another cluster size,
lazy refcounts, extended L2 entries, preallocation) is left to qemu-img, which writes every one of them."""

from __future__ import annotations

from collections.abc import Mapping

from imagepack.core.sizes import parse_size
from imagepack.writers.qcow2.layout import CLUSTER, REFCOUNT_ORDER, CompressionType

_ACCEPTED = {
    "compat": ("1.1", "v3"),
    "preallocation": ("off",),
    "lazy_refcounts": ("off",),
    "extended_l2": ("off",),
    "refcount_bits": (str(1 << REFCOUNT_ORDER),),
}


def own_compression(options: Mapping[str, str]) -> CompressionType | None:
    """The cluster codec imagepack's writer would use for a compressed qcow2 with these (checked) options, or
    None where the options ask for a layout it does not write."""
    for key, value in options.items():
        if key == "cluster_size":
            if parse_size(value, what=key) != CLUSTER:
                return None
        elif key == "compression_type":
            continue
        elif value not in _ACCEPTED.get(key, ()):
            return None
    return CompressionType.ZSTD if options.get("compression_type") == "zstd" else CompressionType.ZLIB
