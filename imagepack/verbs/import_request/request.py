"""The CreateImage request (SPEC §3) for one file: its body, as the API spells it, and the oci-cli commands that
upload the file and make the request."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepack.core.problems import Problem
from imagepack.files.checksums import MIB, OBJECT_PUT_PART_SIZE
from imagepack.oci.metadata import LaunchMode
from imagepack.oci.objectstorage import ObjectUrl, check_bucket, check_namespace, check_object_name, check_region

IAAS_API_VERSION = "20160918"  # the Core Services API version CreateImage is under
BODY_FILE = "create-image.json"  # the name the printed commands give the request body


@dataclass(frozen=True)
class ObjectLocation:
    """The tuple form of an object: namespace, bucket and name, and the bucket's region where it is known."""

    namespace: str
    bucket: str
    object: str
    region: str | None = None

    @classmethod
    def checked(cls, namespace: str, bucket: str, object_name: str, region: str | None = None) -> ObjectLocation:
        return cls(
            check_namespace(namespace),
            check_bucket(bucket),
            check_object_name(object_name),
            check_region(region) if region is not None else None,
        )


@dataclass(frozen=True)
class Command:
    purpose: str  # "upload" or "import"
    argv: list[str]

    def shell(self) -> str:
        return shlex.join(self.argv)

    def to_json(self) -> dict[str, Any]:
        return {"purpose": self.purpose, "argv": self.argv, "shell": self.shell()}


@dataclass
class ImportRequest:
    """A CreateImage request for one file, and where it was read from."""

    path: Path
    source_format: str  # "qcow2", "vmdk" or "oci"
    compartment_id: str
    display_name: str
    launch_mode: LaunchMode
    location: ObjectUrl | ObjectLocation
    operating_system: str | None = None
    operating_system_version: str | None = None
    freeform_tags: dict[str, str] = field(default_factory=dict)
    defined_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    endpoint: str | None = None  # https://iaas.REGION.DOMAIN, where the region is known

    @property
    def source_image_type(self) -> str | None:
        """QCOW2 or VMDK; a .oci carries its own format, and OCI does not use the field for it."""
        return None if self.source_format == "oci" else self.source_format.upper()

    def body(self) -> dict[str, Any]:
        """The CreateImage request body, keys as the API spells them; optional ones only when they have a value."""
        details: dict[str, Any]
        if isinstance(self.location, ObjectUrl):
            details = {"sourceType": "objectStorageUri", "sourceUri": self.location.to_url()}
        else:
            details = {
                "sourceType": "objectStorageTuple",
                "namespaceName": self.location.namespace,
                "bucketName": self.location.bucket,
                "objectName": self.location.object,
            }
        if self.operating_system is not None:
            details["operatingSystem"] = self.operating_system
            details["operatingSystemVersion"] = self.operating_system_version
        if self.source_image_type is not None:
            details["sourceImageType"] = self.source_image_type
        body: dict[str, Any] = {
            "compartmentId": self.compartment_id,
            "displayName": self.display_name,
            "launchMode": self.launch_mode.value,
            "imageSourceDetails": details,
        }
        if self.freeform_tags:
            body["freeformTags"] = dict(self.freeform_tags)
        if self.defined_tags:
            body["definedTags"] = {namespace: dict(tags) for namespace, tags in self.defined_tags.items()}
        return body

    def commands(self) -> list[Command]:
        return [self._upload(), self._import()]

    def _region(self) -> str | None:
        return self.location.region

    def _upload(self) -> Command:
        location = self.location
        name = location.object
        assert name is not None  # a bucket PAR without a name was refused
        argv = [
            "oci", "os", "object", "put",
            "--bucket-name", location.bucket,
            "--namespace", location.namespace,
            "--name", name,
            "--file", str(self.path),
            "--part-size", str(OBJECT_PUT_PART_SIZE // MIB),  # MiB: the parts `imagepack checksum` assumes
        ]  # fmt: skip
        return Command("upload", argv + _region_option(self._region()))

    def _import(self) -> Command:
        if self.source_format == "oci":
            # `oci compute image import` cannot import a .oci (it always sends sourceImageType); a raw request
            # POSTs the body as it is.
            assert self.endpoint is not None
            argv = [
                "oci", "raw-request",
                "--http-method", "POST",
                "--target-uri", f"{self.endpoint}/{IAAS_API_VERSION}/images",
                "--request-body", f"file://{BODY_FILE}",
            ]  # fmt: skip
            return Command("import", argv)
        if isinstance(self.location, ObjectUrl):
            argv = ["oci", "compute", "image", "import", "from-object-uri", "--uri", self.location.to_url()]
        else:
            argv = [
                "oci", "compute", "image", "import", "from-object",
                "--namespace", self.location.namespace,
                "--bucket-name", self.location.bucket,
                "--name", self.location.object,
            ]  # fmt: skip
        argv += [
            "--compartment-id", self.compartment_id,
            "--display-name", self.display_name,
            "--launch-mode", self.launch_mode.value,
        ]  # fmt: skip
        if self.source_image_type is not None:
            argv += ["--source-image-type", self.source_image_type]
        if self.operating_system is not None and self.operating_system_version is not None:
            argv += ["--operating-system", self.operating_system]
            argv += ["--operating-system-version", self.operating_system_version]
        if self.freeform_tags:
            argv += ["--freeform-tags", _compact_json(self.freeform_tags)]
        if self.defined_tags:
            argv += ["--defined-tags", _compact_json(self.defined_tags)]
        # the tuple form reads the bucket of the region the request goes to
        region = None if isinstance(self.location, ObjectUrl) else self.location.region
        return Command("import", argv + _region_option(region))

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.path),
            "format": self.source_format,
            "body": self.body(),
            "body_file": BODY_FILE,
            "commands": [command.to_json() for command in self.commands()],
            "problems": [problem.to_json() for problem in self.problems],
        }


def _region_option(region: str | None) -> list[str]:
    return ["--region", region] if region is not None else []


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------------------------
# Building the request: every typed value first, then the file.
