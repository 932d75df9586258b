"""MAC addresses a Linux guest's network configuration is tied to: an interface matched or renamed by a MAC
that a new instance will not have never comes up. udev persistent-net rules, ifcfg-* files, NetworkManager
keyfiles, netplan and systemd-networkd files."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from imagepack.sources.guest.linux.reading import Evidence, GuestReader, join
from imagepack.sources.guest.linux.yamlnodes import YamlRefused, compose, get, items, line, scalar

MAC = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
UDEV = re.compile(r"ATTRS?\{address\}\s*==\s*\"(?P<mac>" + MAC + r")\"")
IFCFG = re.compile(r"^\s*(?P<key>HWADDR|MACADDR)\s*=\s*[\"']?(?P<mac>" + MAC + r")[\"']?\s*$")
KEYFILE = re.compile(r"^\s*(?P<key>mac-address|cloned-mac-address)\s*=\s*(?P<mac>" + MAC + r");?\s*$")
SYSTEMD = re.compile(r"^\s*(?P<key>MACAddress|PermanentMACAddress)\s*=\s*(?P<mac>" + MAC + r"(?:\s+" + MAC + r")*)")
NETPLAN_SECTIONS = ("ethernets", "bonds", "bridges", "vlans", "wifis", "vrfs", "tunnels")


@dataclass(frozen=True)
class MacAddress:
    mac: str  # lower case
    use: str  # "match" (the interface is found by it) or "set" (the interface is given it)
    source: str  # udev, ifcfg, networkmanager, netplan, systemd-networkd
    evidence: Evidence


def read_macs(reader: GuestReader) -> list[MacAddress]:
    found: list[MacAddress] = []
    found += _line_files(reader, "/etc/udev/rules.d", (".rules",), UDEV, "udev", lambda key, section: "match")
    for directory in ("/etc/sysconfig/network-scripts", "/etc/sysconfig/network"):
        found += _line_files(reader, directory, ("ifcfg-",), IFCFG, "ifcfg", _ifcfg_use)
    found += _line_files(
        reader,
        "/etc/NetworkManager/system-connections",
        ("",),
        KEYFILE,
        "networkmanager",
        lambda key, section: "set" if key.startswith("cloned") else "match",
    )
    found += _line_files(
        reader, "/etc/systemd/network", (".link", ".network"), SYSTEMD, "systemd-networkd", _systemd_use
    )
    found += _netplan(reader)
    return found


def _ifcfg_use(key: str, section: str) -> str:
    return "set" if key == "MACADDR" else "match"


def _systemd_use(key: str, section: str) -> str:
    return "set" if section == "[Link]" else "match"


def _line_files(
    reader: GuestReader,
    directory: str,
    shapes: tuple[str, ...],
    pattern: re.Pattern[str],
    source: str,
    use: Callable[[str, str], str],
) -> list[MacAddress]:
    found = []
    for name in reader.names(directory):
        if not any(name.startswith(s) or name.endswith(s) for s in shapes) or name.endswith("~"):
            continue
        path = join(directory, name)
        section = ""
        for number, text in reader.lines(path) or []:
            stripped = text.strip()
            if stripped.startswith("#"):
                continue
            if stripped.startswith("[") and stripped.endswith("]"):
                section = stripped
            for match in pattern.finditer(text):
                how = use(match.groupdict().get("key") or "", section)
                for mac in match.group("mac").split():
                    found.append(MacAddress(mac.lower(), how, source, Evidence(path, number, stripped)))
    return found


def _netplan(reader: GuestReader) -> list[MacAddress]:
    found = []
    for name in reader.names("/etc/netplan"):
        if not name.endswith((".yaml", ".yml")):
            continue
        path = join("/etc/netplan", name)
        text = reader.text(path)
        if text is None:
            continue
        try:
            root = compose(text)
        except YamlRefused as e:
            reader.note(path, str(e))
            continue
        lines = text.splitlines()
        for section in NETPLAN_SECTIONS:
            for _, interface in items(get(get(root, "network"), section)):
                for use, node in (
                    ("match", get(get(interface, "match"), "macaddress")),
                    ("set", get(interface, "macaddress")),
                ):
                    mac = scalar(node)
                    if node is not None and mac and re.fullmatch(MAC, mac):
                        number = line(node)
                        text_line = lines[number - 1].strip() if number <= len(lines) else None
                        found.append(MacAddress(mac.lower(), use, "netplan", Evidence(path, number, text_line)))
    return found
