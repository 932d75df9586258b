"""Reading a Windows guest offline: its registry hives (through regipy, from memory) and the NTFS volume they
are on."""

from imagepack.sources.guest.windows.analyse import analyse_windows
from imagepack.sources.guest.windows.ntfsdirty import ntfs_volume_dirty
from imagepack.sources.guest.windows.report import WindowsReport

__all__ = ["WindowsReport", "analyse_windows", "ntfs_volume_dirty"]
