"""Real NTFS volumes for the tests, written without mounting anything: mkntfs makes the file system on a file,
libntfs-3g (the library ntfs-3g's tools use) makes the folders, and ntfscp copies files in."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
from pathlib import Path

S_IFDIR = 0o040000


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(ctypes.util.find_library("ntfs-3g") or "libntfs-3g.so.89")
    lib.ntfs_mount.restype = ctypes.c_void_p
    lib.ntfs_mount.argtypes = [ctypes.c_char_p, ctypes.c_ulong]
    lib.ntfs_pathname_to_inode.restype = ctypes.c_void_p
    lib.ntfs_pathname_to_inode.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    lib.ntfs_mbstoucs.restype = ctypes.c_int
    lib.ntfs_mbstoucs.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.ntfs_create.restype = ctypes.c_void_p
    lib.ntfs_create.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint8, ctypes.c_uint32]
    lib.ntfs_inode_close.argtypes = [ctypes.c_void_p]
    lib.ntfs_umount.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def make_folders(image: Path, folders: list[str]) -> None:
    """Create each folder ('Windows/System32', parents first) on the NTFS volume in `image`."""
    lib, libc = _library(), ctypes.CDLL(ctypes.util.find_library("c"))
    volume = lib.ntfs_mount(str(image).encode(), 0)
    assert volume, f"libntfs-3g cannot open {image}"
    try:
        for folder in folders:
            parent, _, name = ("/" + folder.strip("/")).rpartition("/")
            directory = lib.ntfs_pathname_to_inode(volume, None, (parent or "/").encode())
            assert directory, f"no folder {parent or '/'} on {image}"
            unicode = ctypes.c_void_p()
            length = lib.ntfs_mbstoucs(name.encode(), ctypes.byref(unicode))
            assert length > 0
            inode = lib.ntfs_create(directory, 0, unicode, length, S_IFDIR)
            libc.free(unicode)
            lib.ntfs_inode_close(directory)
            assert inode, f"libntfs-3g could not create {folder}"
            lib.ntfs_inode_close(inode)
    finally:
        assert lib.ntfs_umount(volume, 0) == 0


def make_ntfs(image: Path, files: dict[str, Path], size: int = 64 * 1024**2) -> Path:
    """A fresh NTFS volume of `size` bytes (sparse) in `image` holding `files` (guest path -> host file), with
    the folders they are in."""
    with image.open("wb") as out:
        out.truncate(size)
    subprocess.run(["mkntfs", "-F", "-Q", "-q", str(image)], check=True, capture_output=True)
    folders: list[str] = []
    for guest in files:
        parts = guest.strip("/").split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in folders:
                folders.append(folder)
    if folders:
        make_folders(image, folders)
    for guest, host in files.items():
        subprocess.run(["ntfscp", "-q", str(image), str(host), guest.strip("/")], check=True, capture_output=True)
    return image
