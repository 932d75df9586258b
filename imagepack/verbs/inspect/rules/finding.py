"""One readiness finding: a stable id, a severity, what is wrong, the guest evidence it rests on (a guest path and
line, or a hive key and value) and what to do. Rules read the inspect report (its JSON, already bounded and made
printable by the guest reader), so they run wherever the report is: `inspect --for`, `verify`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imagepack.core.problems import Problem, Remedy, Severity

ERROR, WARNING, NOTE = Severity.ERROR, Severity.WARNING, Severity.NOTE


@dataclass(frozen=True)
class Finding:
    id: str  # stable, dotted: "linux.virtio-drivers"
    severity: Severity
    message: str
    fix: str | None = None
    evidence: list[str] = field(default_factory=list)
    remedy: Remedy | None = None  # a setting or command of imagepack's that does the fix; the front end words it
    value: str | None = None  # what the remedy would set

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.value,
            "message": self.message,
            "evidence": self.evidence,
            "fix": self.fix,
            "remedy": self.remedy.value if self.remedy else None,
            "value": self.value,
        }

    def problem(self) -> Problem:
        """The finding as every other check reports a problem (verify's list)."""
        told = f" [{'; '.join(self.evidence[:2])}]" if self.evidence else ""
        fix = f"; {self.fix}" if self.fix else ""
        return Problem(
            self.id, f"guest: {self.message}{told}{fix}", self.remedy, severity=self.severity, value=self.value
        )


def evidence(found: Any) -> list[str]:
    """A report's evidence (a guest path, line and text; a hive, key, value and data; or a list of them) as text."""
    if isinstance(found, list):
        return [text for item in found for text in evidence(item)]
    if not isinstance(found, dict):
        return []
    if "hive" in found:
        data = "not set" if found.get("type") is None else f"{found.get('type')} {found.get('data')}"
        return [f"{found['hive']}: {found['key']}\\{found['value']} = {data}"]
    if "path" in found:
        line = f" line {found['line']}" if found.get("line") else ""
        text = f": {found['text']}" if found.get("text") else ""
        return [f"{found['path']}{line}{text}"]
    return []
