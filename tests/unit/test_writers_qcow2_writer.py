"""imagepack's compressed qcow2 writer at every level of both cluster codecs: the same bytes at one thread, two,
three and one per core, and qemu-img reads back the guest disk from each (zlib level 1 is ISA-L's, in qemu's 4 KiB
window; 2 to 9 zlib's; zstd 1 to 22)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from imagepack.formats import ImageFormat
from imagepack.tools.qemu_img import ImageRef
from imagepack.writers.qcow2 import CompressionType, write_compressed_qcow2_file
from imagepack.writers.qcow2.codecs import LEVELS
from tests.conftest import QEMU_IMG
from tests.readers import qemu_compare

MiB = 1024**2


def write_mixed_disk(path: Path) -> int:
    """4 MiB over four 1 MiB chunks: text, binary-like data, random clusters and a hole, so that the threads
    finish chunks out of order."""
    rng = random.Random(7)
    words = [rng.randbytes(rng.randint(2, 9)).hex() for _ in range(300)]
    with open(path, "wb") as f:
        f.write(" ".join(rng.choice(words) for _ in range(130_000)).encode()[:MiB])
        f.write(bytes(rng.choice((0, 1, 2, 255, rng.randrange(256))) for _ in range(MiB)))
        f.write(rng.randbytes(MiB // 2))
        f.truncate(4 * MiB)
    return 4 * MiB


@pytest.mark.parametrize("codec", list(CompressionType), ids=lambda c: c.name.lower())
def test_every_level_writes_the_same_bytes_at_any_thread_count(tmp_path: Path, codec: CompressionType) -> None:
    raw = tmp_path / "disk.raw"
    size = write_mixed_disk(raw)
    lowest, highest, default = LEVELS[codec]
    # Every zlib level; zstd's ends, its default and one between (each of its 22 levels is the same code path).
    levels = range(lowest, highest + 1) if codec is CompressionType.ZLIB else (lowest, default, 12, highest)
    outputs = set()
    for level in levels:
        digests = set()
        for threads in (1, 2, 3, None):
            out = tmp_path / f"{level}-{threads}.qcow2"
            out.touch()
            write_compressed_qcow2_file(
                ImageRef(raw, ImageFormat.RAW), out, virtual_size=size, compression=codec, level=level, threads=threads
            )
            digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
        assert len(digests) == 1, level
        assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0, level
        outputs |= digests
    assert len(outputs) > len(levels) // 2  # the levels reach the encoder


@pytest.mark.parametrize("level", [None, 1, 9], ids=["default", "isal", "zlib-9"])
def test_random_clusters_are_stored_as_they_are_and_the_rest_compressed(tmp_path: Path, level: int | None) -> None:
    """A cluster no encoder can shrink is stored as qemu stores it, in a cluster of its own (qemu-img map gives
    its place in the file), whichever encoder a level picks; text and binary-like clusters are compressed (map
    gives compressed clusters no place)."""
    raw = tmp_path / "disk.raw"
    size = write_mixed_disk(raw)
    out = tmp_path / "out.qcow2"
    out.touch()
    write_compressed_qcow2_file(ImageRef(raw, ImageFormat.RAW), out, virtual_size=size, level=level)
    mapped = subprocess.run(
        [QEMU_IMG, "map", "--output=json", "-f", "qcow2", str(out)], capture_output=True, text=True, check=True
    )
    stored = {(e["start"], e["length"]) for e in json.loads(mapped.stdout) if "offset" in e}
    assert stored == {(2 * MiB, MiB // 2)}
    assert qemu_compare(raw, "raw", out, "qcow2").returncode == 0
