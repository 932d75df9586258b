"""imagepack's own compressed qcow2 writer: clusters compressed on every core, written in order."""

from imagepack.writers.qcow2.layout import CompressionType
from imagepack.writers.qcow2.writer import write_compressed_qcow2, write_compressed_qcow2_file

__all__ = ["CompressionType", "write_compressed_qcow2", "write_compressed_qcow2_file"]
