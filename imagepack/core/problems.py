"""What is wrong with an input, in one shape for every layer: a stable code a script can test, a message with no
command-line syntax in it, and the remedy in library terms. Each front end words a remedy in its own terms (the
command line names its option, a batch manifest its key)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # refused, or an import that would fail
    WARNING = "warning"  # worth a look; an error under a strict check
    NOTE = "note"  # for information only


class Remedy(StrEnum):
    """What would let the work go on. Each is a setting of the library call (SafetyPolicy, the metadata request);
    the CLI names the option that sets it."""

    ALLOW_BACKING = "allow-backing"  # follow the backing files and extents an image names (trusted images only)
    RAISE_MAX_SIZE = "max-size"  # accept a larger virtual size
    STATE_FORMAT = "from"  # say what the content is
    STATE_FIRMWARE = "firmware"  # say which firmware the disk boots with
    STATE_OS = "os"  # say which operating system the disk holds
    SET_OS = "meta-set-os"  # change the operating system an archive's metadata names
    OS_UNLISTED = "os-unlisted"  # the name typed is right though one letter from a listed one (the value)
    STATE_TARGET_FORMAT = "to"  # say which format to write
    STATE_METADATA = "metadata"  # give the image metadata to start from
    REPLACE_OUTPUT = "force"  # replace an output that exists
    RESIZE_UP = "resize-up"  # grow the output's virtual size to what the platform takes (the value)
    STATE_LAUNCH_MODE = "launch-mode"  # say which launch mode the image imports in
    WINDOWS_CLOCK_FIX = "windows-rtc-fix"  # have the guest keep its hardware clock in UTC (RealTimeIsUniversal)
    QEMU_STREAM_WRITER = "stream-writer"  # have qemu-img write a stream-optimized vmdk (no qemu-nbd needed)
    USE_TCG = "accel"  # run a boot test under qemu's own CPU emulation rather than KVM
    STATE_DISK = "disk"  # say which of an OVA's disks to read
    GUEST_MISMATCH_OK = "guest-mismatch-ok"  # the value given is right though the guest says otherwise
    ALLOW_PARTIAL = "allow-partial"  # merge the shard reports there are, the merged report naming those missing
    NO_COMPRESS = "no-compress"  # write the output uncompressed (only qcow2 and vmdk outputs compress)
    UNCOMPRESSED_SUBFORMAT = "uncompressed-subformat"  # keep the vmdk subformat asked for: write it uncompressed
    FIRMWARE_AS = "firmware-as"  # state the firmware as the value, the one the disk boots with
    TAKE_GUEST_OS = "guest-os"  # leave the operating system out, to take the one the guest holds


@dataclass(frozen=True)
class Problem:
    code: str  # stable, dotted: "qcow2.backing-file", "metadata.unknown-os"
    message: str
    remedy: Remedy | None = None
    severity: Severity = Severity.ERROR
    value: str | None = None  # what the remedy would set, where it is known (the format the content is)
    size: int | None = None  # the size in bytes it is about, where it is one (a virtual size above the limit)

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "remedy": self.remedy.value if self.remedy else None,
            "value": self.value,
        }
