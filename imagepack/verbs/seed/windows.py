"""The Windows clock fix a seed can carry: OCI keeps a guest's hardware clock in UTC, and Windows reads it as
local time unless RealTimeIsUniversal is set, so a Windows custom image's clock returns to the default time zone
after each reboot. The seed holds the fix as a .reg file (what regedit writes: UTF-16LE with a byte-order mark,
CRLF line ends), the same as a PowerShell script, and a README saying how to apply them."""

from __future__ import annotations

from dataclasses import dataclass

KEY = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\TimeZoneInformation"
VALUE = "RealTimeIsUniversal"

REG_NAME = "RealTimeIsUniversal.reg"
SCRIPT_NAME = "RealTimeIsUniversal.ps1"
README_NAME = "README.txt"


@dataclass(frozen=True)
class ExtraFile:
    name: str  # as written on the seed (Rock Ridge and Joliet)
    data: bytes


def crlf(lines: list[str]) -> str:
    return "".join(line + "\r\n" for line in lines)


def registry_file() -> bytes:
    text = crlf(
        [
            "Windows Registry Editor Version 5.00",
            "",
            f"[{KEY}]",
            f'"{VALUE}"=dword:00000001',
            "",  # regedit ends an export with an empty line
        ]
    )
    return "\ufeff".encode("utf-16-le") + text.encode("utf-16-le")


def powershell_script() -> bytes:
    key = KEY.replace("HKEY_LOCAL_MACHINE", "HKLM:")
    return crlf(
        [
            "# Sets RealTimeIsUniversal (DWORD 1): Windows then reads the hardware clock as UTC, as OCI keeps it.",
            "# Run as Administrator: powershell -ExecutionPolicy Bypass -File D:\\" + SCRIPT_NAME,
            "$ErrorActionPreference = 'Stop'",
            f"$key = '{key}'",
            f"New-ItemProperty -Path $key -Name '{VALUE}' -PropertyType DWord -Value 1 -Force | Out-Null",
            f"$value = (Get-ItemProperty -Path $key -Name '{VALUE}').{VALUE}",
            f'if ($value -ne 1) {{ throw "{VALUE} is $value, not 1" }}',
            f"Write-Output '{VALUE} is 1: the clock keeps its time zone after the next restart.'",
        ]
    ).encode("ascii")


def readme() -> bytes:
    return crlf(
        [
            "Windows clock fix for Oracle Cloud custom images",
            "",
            "OCI keeps the virtual machine's hardware clock in UTC. Windows reads that clock as local time unless",
            f"{KEY}\\{VALUE}",
            "is a DWORD set to 1, so without it the clock goes back to the default time zone after every reboot.",
            "",
            "Apply the fix inside the Windows image before it is exported or imported, as Administrator, with one of:",
            f"  reg import D:\\{REG_NAME}",
            f"  powershell -ExecutionPolicy Bypass -File D:\\{SCRIPT_NAME}",
            "(D: is this disc's drive letter; double-clicking the .reg file works too), then restart Windows.",
        ]
    ).encode("ascii")


def rtc_fix_files() -> list[ExtraFile]:
    return [
        ExtraFile(REG_NAME, registry_file()),
        ExtraFile(SCRIPT_NAME, powershell_script()),
        ExtraFile(README_NAME, readme()),
    ]
