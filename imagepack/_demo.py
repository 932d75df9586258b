"""The README's first command: make a sample disk, convert it, and show what imagepack sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from imagepack.sample import write_sample_disk


def main(folder: str) -> int:
    out = Path(folder)
    out.mkdir(exist_ok=True)
    disk = out / "sample.raw"
    write_sample_disk(disk, 256 * 1024**2)
    print(f"made {disk}: a 256 MiB sparse raw disk with a GPT and an EFI system partition")
    steps = [
        ["info", str(disk)],
        ["convert", "--force", str(disk), str(out / "sample.vmdk"), "-o", "adapter_type=lsilogic"],
        ["info", str(out / "sample.vmdk")],
    ]
    for step in steps:
        print(f"\n$ imagepack {' '.join(step)}", flush=True)
        done = subprocess.run([sys.executable, "-m", "imagepack", *step], check=False)
        if done.returncode != 0:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "example"))
