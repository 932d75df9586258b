"""user-data (and vendor-data, which cloud-init reads the same way): refused unless it starts with a header
cloud-init knows, and a #cloud-config checked as YAML. Mirrors cloud-init's own detection
(`handlers.type_from_starts_with`, `user_data.convert_string`): a gzip stream is decompressed first, a MIME
message is one with a MIME-Version header in its first 4 KiB, and any other text is typed by its first
characters, in any case, after leading white space."""

from __future__ import annotations

import email
import re
import zlib
from dataclasses import dataclass, field

import yaml

from imagepack.core.errors import InputError, InvalidValueError
from imagepack.core.problems import Problem, Severity
from imagepack.verbs.seed.documents import (
    MAX_FILE_SIZE,
    SAFE_LOADER,
    SeedFile,
    decode_text,
    load_mapping,
    load_yaml,
    yaml_type,
)

# cloud-init's INCLUSION_TYPES_MAP (cloudinit/handlers/__init__.py), header to content type.
HEADERS = {
    "#include": "text/x-include-url",
    "#include-once": "text/x-include-once-url",
    "#!": "text/x-shellscript",
    "#cloud-config": "text/cloud-config",
    "#part-handler": "text/part-handler",
    "#cloud-boothook": "text/cloud-boothook",
    "#cloud-config-archive": "text/cloud-config-archive",
    "#cloud-config-jsonp": "text/cloud-config-jsonp",
    "## template: jinja": "text/jinja2",
}
# Known, but worth a warning: what cloud-init no longer does, and what only cloudbase-init (Windows) runs.
DROPPED = {"#upstart-job": "cloud-init dropped upstart jobs in 22.2; newer releases ignore this user-data"}
CLOUDBASE_INIT = ("#ps1_sysnative", "#ps1_x86", "#ps1", "rem cmd")
# The headers a jinja template may wrap (cloud-init's jinja format page).
JINJA_WRAPS = ("#cloud-config", "#!", "#cloud-boothook")

GZIP_MAGIC = b"\x1f\x8b"
MIME_WINDOW = 4096  # cloud-init looks for "mime-version:" this far into the data


@dataclass(frozen=True)
class UserData:
    """What cloud-init will take the file for."""

    content_type: str  # text/cloud-config, multipart/mixed, ...; "empty" for an empty file
    compressed: bool = False
    warnings: tuple[Problem, ...] = field(default=())


def check_user_data(file: SeedFile, what: str = "user-data") -> UserData:
    """Refuse user-data cloud-init would not recognise, or a #cloud-config it could not parse."""
    if file.data.startswith(GZIP_MAGIC):
        inner = SeedFile(_gunzip(file), f"{file.label} (decompressed)")
        found = _check_text(inner, what)
        return UserData(found.content_type, compressed=True, warnings=found.warnings)
    return _check_text(file, what)


def _gunzip(file: SeedFile) -> bytes:
    # Bounded like any other seed file: a small stream may expand to gigabytes.
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(file.data, MAX_FILE_SIZE + 1)
        complete = decompressor.eof
    except zlib.error as e:
        raise InputError(f"{file.label}: the gzip stream is damaged ({e})", code="seed.damaged-gzip") from None
    if len(data) > MAX_FILE_SIZE:
        raise InputError(f"{file.label}: expands to more than {MAX_FILE_SIZE // 1024**2} MiB", code="seed.too-large")
    if not complete:
        raise InputError(f"{file.label}: the gzip stream is cut short", code="seed.damaged-gzip")
    return data


def _check_text(file: SeedFile, what: str) -> UserData:
    if file.data.startswith(GZIP_MAGIC):
        raise InputError(f"{file.label}: is gzip inside gzip, which cloud-init does not unwrap", code="seed.gzip")
    text = decode_text(file, what)
    if not text.strip():
        return UserData("empty")  # cloud-init runs nothing; the seed is still valid
    if text.startswith("\ufeff"):
        raise InputError(
            f"{file.label}: starts with a byte-order mark, which hides its header from cloud-init; save it as "
            "UTF-8 without one",
            code="seed.byte-order-mark",
        )
    if "mime-version:" in text[:MIME_WINDOW].lower():
        return UserData(email.message_from_string(text).get_content_type())  # multipart/mixed, as a rule
    start = text.lstrip().lower()
    if start.startswith("content-type:"):
        raise InputError(
            f"{file.label}: looks like a MIME message but has no MIME-Version header in its first "
            f"{MIME_WINDOW} bytes, so cloud-init would not read it as one; add 'MIME-Version: 1.0'",
            code="seed.user-data-header",
        )
    header = _header_of(start)
    if header == "#cloud-config":
        load_mapping(file, f"a #cloud-config {what}")
    elif header == "#cloud-config-archive":
        archive = load_yaml(file, f"a #cloud-config-archive {what}")
        if not isinstance(archive, list):
            raise InputError(
                f"{file.label}: is a YAML {yaml_type(archive)}, but a #cloud-config-archive must be a list of parts",
                code="seed.not-a-list",
            )
    elif header == "## template: jinja":
        _check_jinja(file, text)
    if header is not None:
        return UserData(HEADERS[header])
    for old, why in DROPPED.items():
        if start.startswith(old):
            dropped = Problem("seed.upstart-job", f"{file.label}: {why}", severity=Severity.WARNING)
            return UserData("text/upstart-job", warnings=(dropped,))
    if start.startswith(CLOUDBASE_INIT):
        note = Problem(
            "seed.cloudbase-init-only",
            f"{file.label}: a cloudbase-init script (Windows); cloud-init on Linux would ignore this {what}",
            severity=Severity.WARNING,
        )
        return UserData("text/x-cloudbase-init-script", warnings=(note,))
    raise InputError(f"{file.label}: {_unknown_header(text, what)}", code="seed.user-data-header")


def _header_of(start: str) -> str | None:
    for header in sorted(HEADERS, key=len, reverse=True):  # longest first, as cloud-init tries them
        if start.startswith(header):
            return header
    return None


def _check_jinja(file: SeedFile, text: str) -> None:
    # The rendered text is typed again; the jinja format page asks for the original header on the next line.
    rest = text.lstrip().split("\n", 1)[1] if "\n" in text.lstrip() else ""
    if not rest.lstrip().lower().startswith(JINJA_WRAPS):
        raise InputError(
            f"{file.label}: line 2: a jinja template must keep its own header (#cloud-config, #! or "
            "#cloud-boothook) on the line after '## template: jinja'",
            code="seed.user-data-header",
        )


def _unknown_header(text: str, what: str) -> str:
    first = text.lstrip().split("\n", 1)[0].strip()
    shown = first if len(first) <= 40 else first[:37] + "..."
    known = "#cloud-config, #!, #include, #cloud-boothook, a MIME multi-part message, ..."
    advice = ""
    try:
        document = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        document = None
    if isinstance(document, dict):
        advice = "; it reads as YAML: add '#cloud-config' as its first line"
    return f"line 1 ({shown!r}) is no header cloud-init knows ({known}), so it would ignore this {what}{advice}"


_MARKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=-]{0,63}")


def default_user_data(marker: str) -> bytes:
    """A #cloud-config that makes cloud-init print `marker` on the console once it has run: as its final message
    (to /dev/console, the serial port when the kernel's console is ttyS0) and from runcmd on the first serial
    port directly, so a boot test that watches COM1 sees it whatever the console is."""
    if not _MARKER.fullmatch(marker):
        raise InvalidValueError(
            f"{marker!r}: a boot marker must be 1 to 64 letters, digits or ._:=- (it is written into YAML and a "
            "shell command)"
        )
    return (
        "#cloud-config\n"
        "# Written by imagepack: prints the marker below on the console once cloud-init has run.\n"
        f'final_message: "{marker}"\n'  # quoted: YAML 1.1 would read 1:30 or yes as a number or a bool
        "runcmd:\n"
        f"  - [sh, -c, 'echo {marker} > /dev/ttyS0 || true']\n"
    ).encode()
