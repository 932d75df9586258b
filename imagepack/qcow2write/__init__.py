"""imagepack's own compressed qcow2 writer: clusters compressed on every core, written in order."""

from imagepack.qcow2write.layout import CompressionType
from imagepack.qcow2write.writer import write_compressed_qcow2, write_compressed_qcow2_file

__all__ = ["CompressionType", "write_compressed_qcow2", "write_compressed_qcow2_file"]
