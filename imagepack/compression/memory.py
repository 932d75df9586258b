"""The memory a compressed stream asks of its decoder, bounded before it is decoded: an xz block holds its
declared dictionary (up to 4 GiB), a zstd frame its window. A stream that asks for more than the bound is refused,
saying how much it would need, rather than failing for want of memory midway."""

from __future__ import annotations

from imagepack.compression.xzblocks import NotParallel, all_blocks, block_dictionary
from imagepack.core.errors import UnreadableError

MiB = 1024**2
# Every dictionary xz itself writes (1.5 GiB at most, with --lzma2=dict=1536MiB), and what liblzma holds beside it.
MAX_XZ_MEMORY = 1600 * MiB
# What `zstd -d` decodes without --memory or --long (zstd's ZSTD_WINDOWLOG_LIMIT_DEFAULT): a frame asking for a
# larger window, which only `zstd --long` writes, is refused by `zstd -t` as it is here.
MAX_ZSTD_WINDOW = 1 << 27
STREAM_START = 12  # the first block of an xz file's first stream follows its 12-byte stream header
ZSTD_DECOMPRESS = ("zstd", "-d", "--memory=")  # zstd's command line, its memory limit to follow


def needs_memory(label: object, stream: str, why: str, remedy: str) -> UnreadableError:
    return UnreadableError(
        f"{label}: decoding this {stream} stream needs {why}, more than imagepack allows; {remedy}",
        code="input.compressed-memory",
    )


def xz_dictionary(fd: int) -> int | None:
    """The largest dictionary an xz file's blocks declare: every block's, where the file's indexes can be walked
    (bounded as xzblocks bounds them), else the first block's."""
    try:
        offsets = [block.offset for block in all_blocks(fd)]
    except NotParallel:
        offsets = [STREAM_START]
    sizes = [size for offset in offsets if (size := block_dictionary(fd, offset)) is not None]
    return max(sizes, default=None)


def require_xz_memory(fd: int, label: object) -> None:
    dictionary = xz_dictionary(fd)
    if dictionary is not None and dictionary + MiB > MAX_XZ_MEMORY:
        raise too_much_xz_memory(label, dictionary)


def too_much_xz_memory(label: object, dictionary: int | None) -> UnreadableError:
    why = "more memory than is available to it"
    if dictionary is not None:
        why = f"about {dictionary // MiB + 1} MiB of memory (a block declares a dictionary of {_size(dictionary)})"
    return needs_memory(
        label, "xz", why, f"xz encoders write dictionaries of {_size(MAX_XZ_MEMORY - 64 * MiB)} at most"
    )


def require_zstd_window(window: int, label: object, at: int) -> None:
    if window > MAX_ZSTD_WINDOW:
        raise needs_memory(
            label,
            "zstd",
            f"a window of {_size(window)} (the frame at byte {at})",
            f"decompress it first with {' '.join(ZSTD_DECOMPRESS)}{-(-window // MiB)}MB and give imagepack the result",
        )


def zstd_window(descriptor: int, window_byte: int, content_size: int) -> int:
    """The window a zstd frame asks of its decoder: the one its header declares, or its content size in a
    single-segment frame."""
    if descriptor >> 5 & 1:
        return max(content_size, 1 << 10)
    base = 1 << (10 + (window_byte >> 3))
    return base + base // 8 * (window_byte & 7)


def _size(n: int | None) -> str:
    n = n or 0
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{-(-n // MiB)} MiB"
