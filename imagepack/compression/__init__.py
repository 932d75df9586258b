"""Compressed files (zstd, xz, gzip, bzip2), recognised by their magic, never by their name. As inputs they are
decompressed once into a sparse temporary file, bounded by what the disk inside says it can need, then read like
any other input (bounded.py); `compress_file` and `decompress_file` write them (files.py)."""

from imagepack.compression.bounded import Decompressed, decompressed, problems_before_the_end
from imagepack.compression.files import (
    THREADED,
    Codec,
    CompressionResult,
    check_settings,
    codec_named,
    compress_file,
    compress_into,
    decompress_file,
    parse_codec,
)
from imagepack.compression.streams import (
    STREAM_ERRORS,
    STREAMS,
    compression_of,
    damaged,
    declared_size,
    inner_name,
    open_decompressed,
    peek,
    stream_in,
)

__all__ = [
    "STREAMS",
    "STREAM_ERRORS",
    "THREADED",
    "Codec",
    "CompressionResult",
    "Decompressed",
    "check_settings",
    "codec_named",
    "compress_file",
    "compress_into",
    "compression_of",
    "damaged",
    "declared_size",
    "decompress_file",
    "decompressed",
    "inner_name",
    "open_decompressed",
    "parse_codec",
    "peek",
    "problems_before_the_end",
    "stream_in",
]
