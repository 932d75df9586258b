"""The operating system as a Linux guest states it: /etc/os-release (resolved inside the guest, where it often
links to ../usr/lib/os-release), else /usr/lib/os-release, else the older release files."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

from imagepack.sources.guest.guestfs import GuestFiles, TooLarge

RELEASE_LIMIT = 64 * 1024
OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
OLD_RELEASE_FILES = (
    ("/etc/oracle-release", "ol", "Oracle Linux Server"),
    ("/etc/centos-release", "centos", "CentOS Linux"),
    ("/etc/redhat-release", "rhel", "Red Hat Enterprise Linux"),
)


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines, values unquoted as a shell would; other lines left out."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        values[key] = words[0] if len(words) == 1 else " ".join(words)
    return values


def _present(files: GuestFiles, paths: tuple[str, ...], problems: list[str]) -> Iterator[tuple[str, bytes]]:
    """Each of `paths` the guest holds, with its content, in order; one too large is said in `problems`."""
    for path in paths:
        try:
            raw = files.read(path, RELEASE_LIMIT)
        except TooLarge as e:
            problems.append(str(e))
            continue
        if raw is not None:
            yield path, raw


def linux_os(files: GuestFiles) -> dict[str, Any]:
    """id, version, name, pretty name and where they were read; problems (a file too large) are said."""
    problems: list[str] = []
    for path, raw in _present(files, OS_RELEASE_FILES, problems):
        values = parse_os_release(raw.decode("utf-8", "replace"))
        return {
            "family": "linux",
            "id": values.get("ID"),
            "version": values.get("VERSION_ID"),
            "name": values.get("NAME"),
            "pretty_name": values.get("PRETTY_NAME"),
            "source": path,
            "problems": problems,
        }
    old = {path: (distro, name) for path, distro, name in OLD_RELEASE_FILES}
    for path, raw in _present(files, tuple(old), problems):
        distro, name = old[path]
        line = raw.decode("utf-8", "replace").strip().splitlines()[0] if raw.strip() else ""
        version = re.search(r"release\s+([0-9][0-9.]*)", line)
        return {
            "family": "linux",
            "id": distro,
            "version": version.group(1) if version else None,
            "name": name,
            "pretty_name": line or None,
            "source": path,
            "problems": problems,
        }
    return {"family": "linux", "id": None, "version": None, "name": None, "pretty_name": None, "source": None,
            "problems": problems}  # fmt: skip
