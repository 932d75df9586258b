"""The README's first command: make a sample disk, pack it into a .oci archive for OCI's image import, check
the archive, show what it holds, and convert it back out."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from imagepack.writers.sample import write_sample_disk


def main(folder: str) -> int:
    out = Path(folder)
    out.mkdir(exist_ok=True)
    disk, archive, vmdk = (str(out / name) for name in ("sample.raw", "sample.oci", "sample.vmdk"))
    write_sample_disk(Path(disk), 256 * 1024**2)
    print(f"made {disk}: a 256 MiB sparse raw disk with a GPT and an EFI system partition")
    steps = [
        # The firmware is not given: the EFI system partition on the disk says UEFI_64.
        ["pack", "--force", disk, archive, "--os", "Oracle Linux", "--os-version", "9"],
        ["verify", archive],
        ["meta", "show", archive],
        ["info", archive],
        ["convert", "--force", archive, vmdk, "-o", "adapter_type=lsilogic"],
    ]
    for step in steps:
        print(f"\n$ imagepack {shlex.join(step)}", flush=True)
        # The demo shows the command line tool as a user runs it, output and all.
        done = subprocess.run([sys.executable, "-m", "imagepack", *step], check=False)
        if done.returncode != 0:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "example"))
