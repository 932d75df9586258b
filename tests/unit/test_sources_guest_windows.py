"""The Windows guest readers on real NTFS volumes (mkntfs, ntfscp) holding real hives: the SYSTEM hive of a
Windows 10 1709 machine and a SOFTWARE built from a real hive Windows wrote (fixtures/windows-hives, from
regipy's test data, MIT: see fixtures/README.md and LICENSE.regipy), changed with hivex as each case needs, and
read back through a pyfsntfs guest view."""

from __future__ import annotations

import lzma
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from imagepack.oci.metadata.model import LaunchMode
from imagepack.oci.metadata.rules import check_system
from imagepack.sources.guest.windows import WindowsReport, analyse_windows
from tests.ntfsguest import NtfsGuest
from tests.ntfsmake import make_ntfs

# Real hives from regipy's test data (MIT): fixtures/README.md says which and where from.
HIVES = Path(__file__).parents[2] / "fixtures" / "windows-hives"
CONFIG = "/Windows/System32/config"
CURRENT_VERSION = r"\Microsoft\Windows NT\CurrentVersion"


def _tools() -> None:
    for tool in ("hivexsh", "hivexget", "mkntfs", "ntfscp", "ntfsinfo", "ntfstruncate", "ntfsls"):
        assert shutil.which(tool), f"{tool} is missing: scripts/setup installs libhivex-bin and ntfs-3g"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two real hives, decompressed once."""
    _tools()
    assert HIVES.is_dir(), f"test hives missing: {HIVES}"
    folder = tmp_path_factory.mktemp("hives")
    found = {}
    for name, source in (("SYSTEM", "SYSTEM_WIN_10_1709.xz"), ("SOFTWARE", "ntuser_software_partial.xz")):
        found[name] = folder / name
        found[name].write_bytes(lzma.decompress((HIVES / source).read_bytes()))
    return found


def _exists(hive: Path, key: str) -> bool:
    return subprocess.run(["hivexget", str(hive), key], capture_output=True).returncode == 0


def edit_hive(source: Path, out: Path, keys: dict[str, dict[str, str]]) -> Path:
    """A copy of `source` with each key (created where missing) holding exactly the values given, in hivexsh's
    notation ('dword:1', 'qword:1', 'string:Server'); hivex's commit leaves the base block clean."""
    shutil.copyfile(source, out)
    script = []
    for key, values in keys.items():
        script.append("cd \\")
        path = ""
        for part in key.strip("\\").split("\\"):
            path += "\\" + part
            if not _exists(out, path):
                script.append(f"add {part}")
            script.append(f"cd {part}")
        script.append(f"setval {len(values)}")
        for name, value in values.items():
            script += [name, value]
    script.append("commit")
    (out.parent / f"{out.name}.hsh").write_text("\n".join(script) + "\n")
    subprocess.run(["hivexsh", "-w", "-f", str(out.parent / f"{out.name}.hsh"), str(out)], check=True)
    for key, values in keys.items():  # hivex reads back what it wrote
        shown = subprocess.run(["hivexget", str(out), key], check=True, capture_output=True, text=True).stdout
        assert all(f'"{name}"=' in shown for name in values), shown
    return out


def analyse(tmp_path: Path, files: dict[str, Path], size: int = 64 * 1024**2) -> WindowsReport:
    image = make_ntfs(tmp_path / "volume.img", files, size)
    with NtfsGuest.open(image) as guest:
        return analyse_windows(guest)


def system_with(base: dict[str, Path], tmp_path: Path, keys: dict[str, dict[str, str]]) -> WindowsReport:
    system = edit_hive(base["SYSTEM"], tmp_path / "SYSTEM", keys)
    return analyse(tmp_path, {f"{CONFIG}/SYSTEM": system})


TIME_ZONE = r"\ControlSet001\Control\TimeZoneInformation"
# hivexsh 1.3's "qword:1" leaves the upper half unset: the bytes are spelled out.
QWORD_1 = "hex:11:01,00,00,00,00,00,00,00"


@pytest.mark.parametrize(
    ("value", "expected", "detail"),
    [
        ("dword:1", True, "REG_DWORD 1"),
        (QWORD_1, True, "REG_QWORD 1"),
        ("dword:0", False, "REG_DWORD 0"),
        ("string:1", False, "REG_SZ '1'"),
        (None, False, "not set"),
    ],
)
def test_real_time_is_universal(
    base: dict[str, Path], tmp_path: Path, value: str | None, expected: bool, detail: str
) -> None:
    values = {"TimeZoneKeyName": "string:UTC"} | ({"RealTimeIsUniversal": value} if value else {})
    report = system_with(base, tmp_path, {TIME_ZONE: values})
    fact = report.real_time_is_universal
    assert report.control_set == "ControlSet001"
    assert fact is not None and fact.value is expected and detail in fact.detail
    (evidence,) = fact.evidence
    assert (evidence.hive, evidence.key, evidence.value) == (
        f"{CONFIG}/SYSTEM",
        r"ControlSet001\Control\TimeZoneInformation",
        "RealTimeIsUniversal",
    )


def test_the_control_set_is_the_one_select_current_names(base: dict[str, Path], tmp_path: Path) -> None:
    report = system_with(
        base,
        tmp_path,
        {
            r"\Select": {"Current": "dword:2", "Default": "dword:2"},
            r"\ControlSet002\Control\TimeZoneInformation": {"RealTimeIsUniversal": "dword:1"},
        },
    )
    assert report.control_set == "ControlSet002"
    assert report.real_time_is_universal is not None and report.real_time_is_universal.value is True
    assert report.real_time_is_universal.evidence[0].key.startswith("ControlSet002")


def test_select_current_naming_no_control_set_is_one_finding(base: dict[str, Path], tmp_path: Path) -> None:
    report = system_with(base, tmp_path, {r"\Select": {"Current": "dword:7"}})
    assert report.control_set is None and report.real_time_is_universal is None
    assert [p.code for p in report.findings] == ["windows.no-control-set", "windows.hive-missing"]
    assert "REG_DWORD 7" in report.findings[0].message


def test_virtio_services_their_start_types_and_fast_startup(base: dict[str, Path], tmp_path: Path) -> None:
    services = r"\ControlSet001\Services"
    report = system_with(
        base,
        tmp_path,
        {
            rf"{services}\viostor": {"Start": "dword:0", "Type": "dword:1"},
            rf"{services}\vioscsi": {"Start": "dword:3", "Type": "dword:1"},
            rf"{services}\netkvm": {"Start": "dword:4"},
            r"\ControlSet001\Control\Session Manager\Power": {"HiberbootEnabled": "dword:0"},
        },
    )
    found = {s.name: (s.present, s.start, s.start_type) for s in report.services}
    assert found == {
        "viostor": (True, 0, "boot"),
        "vioscsi": (True, 3, "demand"),
        "netkvm": (True, 4, "disabled"),
    }
    assert report.fast_startup is not None and report.fast_startup.value is False
    assert report.cloudbase_init is not None and report.cloudbase_init.value is False


def test_the_real_hive_has_no_virtio_and_fast_startup_on(base: dict[str, Path], tmp_path: Path) -> None:
    log1, log2 = tmp_path / "SYSTEM.LOG1", tmp_path / "SYSTEM.LOG2"
    log1.write_bytes(b"\x00" * 4096)
    log2.write_bytes(b"\x00" * 4096)
    files = {f"{CONFIG}/SYSTEM": base["SYSTEM"], f"{CONFIG}/SYSTEM.LOG1": log1, f"{CONFIG}/SYSTEM.LOG2": log2}
    report = analyse(tmp_path, files)
    assert [(s.name, s.present, s.start) for s in report.services] == [
        ("viostor", False, None),
        ("vioscsi", False, None),
        ("netkvm", False, None),
    ]
    assert report.fast_startup is not None and report.fast_startup.value is True
    # Its base block states an unfinished write (4317/4316), with the logs beside it.
    (state,) = report.hives
    assert state.dirty and (state.primary_sequence, state.secondary_sequence) == (4317, 4316)
    assert state.logs == (f"{CONFIG}/SYSTEM.LOG1", f"{CONFIG}/SYSTEM.LOG2")
    codes = [p.code for p in report.findings]
    assert "windows.hive-dirty" in codes and "SYSTEM.LOG1" in report.findings[codes.index("windows.hive-dirty")].message
    # SOFTWARE is missing: one finding, the SYSTEM facts still read.
    assert "windows.hive-missing" in codes and report.version is None


def test_a_hive_hivex_committed_is_clean(base: dict[str, Path], tmp_path: Path) -> None:
    report = system_with(base, tmp_path, {TIME_ZONE: {"RealTimeIsUniversal": "dword:1"}})
    assert [h.dirty for h in report.hives] == [False]
    assert "windows.hive-dirty" not in [p.code for p in report.findings]


def test_cloudbase_init_as_a_service_and_as_a_folder_named_in_any_case(base: dict[str, Path], tmp_path: Path) -> None:
    system = edit_hive(
        base["SYSTEM"], tmp_path / "SYSTEM", {r"\ControlSet001\Services\cloudbase-init": {"Start": "dword:2"}}
    )
    marker = tmp_path / "cloudbase-init.conf"
    marker.write_text("[DEFAULT]\n")
    files = {
        f"{CONFIG}/SYSTEM": system,
        "/program files/cloudbase solutions/CLOUDBASE-INIT/conf/cloudbase-init.conf": marker,
    }
    report = analyse(tmp_path, files)
    fact = report.cloudbase_init
    assert fact is not None and fact.value is True
    assert "/Program Files/Cloudbase Solutions/Cloudbase-Init" in fact.detail
    assert "service cloudbase-init (start type automatic)" in fact.detail


# build, EditionID, InstallationType, ProductName -> product, operatingSystemVersion (None: not on OCI's list)
PRODUCTS = [
    (9200, "ServerStandard", "Server", "Windows Server 2012 Standard", "Windows Server 2012 Standard", True),
    (9600, "ServerDatacenter", "Server Core", "Windows Server 2012 R2 Datacenter", "Windows Server 2012 R2 Datacenter", True),  # noqa: E501
    (14393, "ServerStandardEval", "Server", "Windows Server 2016 Standard Evaluation", "Windows Server 2016 Standard", True),  # noqa: E501
    (17763, "ServerDatacenter", "Server Core", "Windows Server 2019 Datacenter", "Windows Server 2019 Datacenter", True),  # noqa: E501
    (20348, "ServerStandard", "Server", "Windows Server 2022 Standard", "Windows Server 2022 Standard", True),
    (20348, "ServerDatacenter", "Server", "Windows Server 2022 Datacenter", "Windows Server 2022 Datacenter", True),
    (26100, "ServerDatacenter", "Server", "Windows Server 2025 Datacenter", "Windows Server 2025 Datacenter", False),
    (22631, "Professional", "Client", "Windows 10 Pro", "Windows 11 Pro", False),
    (19045, "Enterprise", "Client", "Windows 10 Enterprise", "Windows 10 Enterprise", False),
]  # fmt: skip


@pytest.mark.parametrize(("build", "edition_id", "installation", "product_name", "product", "listed"), PRODUCTS)
def test_the_product_and_the_oci_version_string_pack_accepts(
    base: dict[str, Path],
    tmp_path: Path,
    build: int,
    edition_id: str,
    installation: str,
    product_name: str,
    product: str,
    listed: bool,
) -> None:
    software = edit_hive(
        base["SOFTWARE"],
        tmp_path / "SOFTWARE",
        {
            CURRENT_VERSION: {
                "ProductName": f"string:{product_name}",
                "EditionID": f"string:{edition_id}",
                "InstallationType": f"string:{installation}",
                "CurrentBuild": f"string:{build}",
                "CurrentBuildNumber": f"string:{build}",
                "DisplayVersion": "string:21H2",
            }
        },
    )
    report = analyse(tmp_path, {f"{CONFIG}/SOFTWARE": software, f"{CONFIG}/SYSTEM": base["SYSTEM"]})
    version = report.version
    assert version is not None
    assert (version.build, version.edition_id, version.installation_type) == (build, edition_id, installation)
    assert version.product == product and version.display_version == "21H2"
    assert version.evaluation is edition_id.endswith("Eval")
    assert {e.value: e.data for e in version.evidence}["EditionID"] == edition_id
    if listed:
        assert version.oci_operating_system == "Windows"
        text = version.oci_operating_system_version
        assert text == product.removeprefix("Windows ")
        # What pack and meta set check a given Windows version with takes it as it is.
        assert check_system("Windows", text, LaunchMode.PARAVIRTUALIZED, strict=True) == []
    else:
        assert version.oci_operating_system is None and version.oci_operating_system_version is None
    assert version.server is (installation != "Client")


def test_a_software_hive_without_current_version_values_is_one_finding(base: dict[str, Path], tmp_path: Path) -> None:
    report = analyse(tmp_path, {f"{CONFIG}/SOFTWARE": base["SOFTWARE"], f"{CONFIG}/SYSTEM": base["SYSTEM"]})
    assert report.version is None
    assert [p.code for p in report.findings if p.code != "windows.hive-dirty"] == ["windows.no-version"]


def test_a_hive_above_the_cap_is_reported_not_read(base: dict[str, Path], tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"regf" + b"\x00" * 4092)
    image = make_ntfs(
        tmp_path / "volume.img", {f"{CONFIG}/SOFTWARE": small, f"{CONFIG}/SYSTEM": base["SYSTEM"]}, 400 * 1024**2
    )
    listing = subprocess.run(
        ["ntfsls", "-i", "-p", CONFIG, str(image)], check=True, capture_output=True, text=True
    ).stdout
    inode = re.search(r"^\s*(\d+)\s+SOFTWARE$", listing, re.MULTILINE)
    assert inode, listing
    subprocess.run(["ntfstruncate", str(image), inode[1], "0x80", str(300 * 1024**2)], check=True, capture_output=True)
    assert image.stat().st_blocks * 512 < 100 * 1024**2  # the 300 MiB are not written
    with NtfsGuest.open(image) as guest:
        assert guest.size(f"{CONFIG}/SOFTWARE") == 300 * 1024**2
        report = analyse_windows(guest)
    (problem,) = [p for p in report.findings if p.code.startswith("windows.hive-") and "SOFTWARE" in p.message]
    assert problem.code == "windows.hive-too-large" and "314572800 bytes" in problem.message
    assert report.version is None and report.control_set == "ControlSet001"


def _root_subkey_list_field(hive: bytes) -> int:
    (root,) = struct.unpack_from("<I", hive, 0x24)
    return 4096 + root + 4 + 2 + 26  # the root key cell's subkey list offset, after its size and "nk"


@pytest.mark.parametrize("damage", ["garbage", "regf-garbage", "subkey-list-outside"])
def test_a_damaged_hive_is_one_finding_not_a_crash(base: dict[str, Path], tmp_path: Path, damage: str) -> None:
    hive = tmp_path / "SYSTEM"
    if damage == "garbage":
        hive.write_bytes(bytes(range(256)) * 64)
    elif damage == "regf-garbage":
        hive.write_bytes(base["SYSTEM"].read_bytes()[:4096] + bytes(range(251)) * 64)
    else:
        data = bytearray(base["SYSTEM"].read_bytes())
        field = _root_subkey_list_field(bytes(data))
        assert struct.unpack_from("<I", data, field)[0] < len(data)  # the field is where it is said to be
        struct.pack_into("<I", data, field, 0x7FFFFFF0)
        hive.write_bytes(bytes(data))
    report = analyse(tmp_path, {f"{CONFIG}/SYSTEM": hive})
    (problem,) = [p for p in report.findings if "SYSTEM" in p.message and p.code != "windows.hive-dirty"]
    assert problem.code == "windows.hive-unreadable" and problem.message.startswith(f"{CONFIG}/SYSTEM: ")
    assert "\n" not in problem.message
    assert report.control_set is None and report.services == ()
    assert report.hibernation is not None  # the rest is still read


@pytest.mark.parametrize("size", [0, 3 * 1024**2 + 5])
def test_a_non_empty_hiberfil_is_hibernation(tmp_path: Path, size: int) -> None:
    hiberfil = tmp_path / "hiberfil"
    hiberfil.write_bytes(b"HIBR" + b"\x01" * (size - 4) if size else b"")
    image = make_ntfs(tmp_path / "volume.img", {"/HIBERFIL.SYS": hiberfil})
    with NtfsGuest.open(image) as guest:
        assert guest.size("/hiberfil.sys") == size  # what the view states without reading the file
        report = analyse_windows(guest)
    fact = report.hibernation
    assert fact is not None and fact.value is bool(size)
    assert (str(size) in fact.detail) if size else "empty" in fact.detail
    assert {p.code for p in report.findings} == {"windows.hive-missing"}


def test_the_report_is_json_with_its_evidence(base: dict[str, Path], tmp_path: Path) -> None:
    report = system_with(base, tmp_path, {TIME_ZONE: {"RealTimeIsUniversal": QWORD_1}})
    data = report.to_json()
    assert data["controlSet"] == "ControlSet001"
    assert data["realTimeIsUniversal"]["evidence"][0] == {
        "hive": f"{CONFIG}/SYSTEM",
        "key": r"ControlSet001\Control\TimeZoneInformation",
        "value": "RealTimeIsUniversal",
        "type": "REG_QWORD",
        "data": 1,
    }
    assert [s["name"] for s in data["services"]] == ["viostor", "vioscsi", "netkvm"]


@pytest.mark.parametrize(
    ("build", "values", "product", "display"),
    [
        # Before 20H2 the release is in ReleaseId; a Server 2019 says 1809.
        (17763, {"ReleaseId": "string:1809"}, "Windows Server 2019 Datacenter", "1809"),
        # A semi-annual channel server shares no build with a long-term release: OCI does not list it.
        (16299, {"ReleaseId": "string:1709"}, "Windows Server, version 1709", "1709"),
    ],
)
def test_release_id_and_the_semi_annual_channel(
    base: dict[str, Path], tmp_path: Path, build: int, values: dict[str, str], product: str, display: str
) -> None:
    software = edit_hive(
        base["SOFTWARE"],
        tmp_path / "SOFTWARE",
        {
            CURRENT_VERSION: {
                "ProductName": "string:Windows Server Datacenter",
                "EditionID": "string:ServerDatacenterACor",
                "InstallationType": "string:Server Core",
                "CurrentBuildNumber": f"string:{build}",
            }
            | values
        },
    )
    # The hives at a path spelled in another case: NTFS names compare case-insensitively.
    report = analyse(tmp_path, {"/WINDOWS/system32/CONFIG/software": software})
    version = report.version
    assert version is not None and version.product == product and version.display_version == display
    assert version.edition == "Datacenter"
    listed = build == 17763
    assert version.oci_operating_system_version == ("Server 2019 Datacenter" if listed else None)
