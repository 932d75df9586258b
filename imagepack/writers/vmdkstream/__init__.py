"""imagepack's own stream-optimized VMDK writer: grains compressed on every core, written in order."""

from imagepack.writers.vmdkstream.writer import write_stream_vmdk

__all__ = ["write_stream_vmdk"]
