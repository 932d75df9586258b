"""cloud-init in a Linux guest: installed or not, disabled or not, and the datasources it may use (OCI's is
`Oracle`). /etc/cloud/cloud.cfg then /etc/cloud/cloud.cfg.d/*.cfg in name order, a later file's
`datasource_list` replacing an earlier one; no list at all lets cloud-init detect any datasource."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from imagepack.sources.guest.linux.reading import Evidence, GuestReader, join
from imagepack.sources.guest.linux.yamlnodes import YamlRefused, compose, get, line, scalar

PROGRAMS = ("/usr/bin/cloud-init", "/usr/local/bin/cloud-init", "/bin/cloud-init")
CONFIG = "/etc/cloud/cloud.cfg"
CONFIG_DIR = "/etc/cloud/cloud.cfg.d"
DISABLED = "/etc/cloud/cloud-init.disabled"
ORACLE = "Oracle"


@dataclass
class CloudInit:
    installed: bool
    evidence: list[Evidence] = field(default_factory=list)  # what shows it is installed
    disabled: Evidence | None = None
    datasource_list: list[str] | None = None  # None: no list, every datasource may be detected
    datasource_evidence: Evidence | None = None
    unreadable: list[str] = field(default_factory=list)  # configuration files that could not be read

    @property
    def oracle_allowed(self) -> bool | None:
        if not self.installed or self.unreadable:
            return None  # not decided: a file that was not read may set the list
        return self.datasource_list is None or ORACLE in self.datasource_list


def read_cloud_init(reader: GuestReader) -> CloudInit:
    shows = [Evidence(p) for p in (*PROGRAMS, CONFIG) if reader.exists(p)]
    found = CloudInit(bool(shows), shows)
    if reader.exists(DISABLED):
        found.disabled = Evidence(DISABLED)
    files = [CONFIG] + [join(CONFIG_DIR, n) for n in reader.names(CONFIG_DIR) if n.endswith(".cfg")]
    for path in files:
        text = reader.text(path)
        if text is None:
            if reader.exists(path):
                found.unreadable.append(path)
            continue
        try:
            root = compose(text)
        except YamlRefused as e:
            reader.note(path, str(e))
            found.unreadable.append(path)
            continue
        node = get(root, "datasource_list")
        if node is None:
            continue
        number = line(node)
        lines = text.splitlines()
        evidence = Evidence(path, number, lines[number - 1].strip() if number <= len(lines) else None)
        found.datasource_list, found.datasource_evidence = _names(node), evidence
    return found


def _names(node: yaml.Node) -> list[str]:
    if isinstance(node, yaml.SequenceNode):
        return [s for s in (scalar(n) for n in node.value) if s is not None]
    value = scalar(node)
    return [value] if value and value not in ("null", "~") else []
