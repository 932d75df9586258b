"""`imagepack import-request IMAGE`: the CreateImage request body for an image, and the oci-cli commands that upload
it and import it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import describe_problem
from imagepack.cli.run import Run, reporting
from imagepack.cli.shared_options import LAUNCH_MODE, OS_UNLISTED, STRICT, worded
from imagepack.core.errors import InvalidValueError

if TYPE_CHECKING:
    from imagepack.verbs.import_request import ImportRequest

EXAMPLES = """\b
Examples:
  imagepack import-request disk.qcow2 --compartment "$C" --display-name web --namespace ns --bucket b --object web.qcow2
  imagepack import-request web.oci --compartment "$C" --display-name web --uri "$(imagepack url ...)"
  imagepack import-request disk.vmdk --compartment "$C" --display-name db --uri "$URL" --os Ubuntu --os-version 22.04"""


def register(app: typer.Typer) -> None:
    app.command("import-request", epilog=EXAMPLES)(import_request_command)


@reporting
def import_request_command(
    path: Path = typer.Argument(..., metavar="IMAGE_OR_ARCHIVE", help="The qcow2, vmdk or .oci to import."),
    compartment: str = typer.Option(..., "--compartment", metavar="OCID", help="Compartment (or tenancy) OCID."),
    display_name: str = typer.Option(..., "--display-name", metavar="NAME", help="The image's name in OCI."),
    uri: str | None = typer.Option(None, "--uri", metavar="URL", help="Object Storage URL (or object PAR)."),
    namespace: str | None = typer.Option(None, "--namespace", metavar="NAMESPACE", help="Object Storage namespace."),
    bucket: str | None = typer.Option(None, "--bucket", metavar="BUCKET", help="Bucket name."),
    object_name: str | None = typer.Option(None, "--object", metavar="NAME", help="Object name."),
    region: str | None = typer.Option(None, "--region", metavar="REGION", help="The bucket's region."),
    launch_mode: str | None = LAUNCH_MODE,
    os_name: str | None = worded("--os", "Operating system (not for a .oci)."),
    os_version: str | None = worded("--os-version", "Its version."),
    tag: list[str] = typer.Option([], "--tag", metavar="KEY=VALUE", help="Freeform tag (repeatable)."),
    defined_tag: list[str] = typer.Option(
        [], "--defined-tag", metavar="NS.KEY=VALUE", help="Defined tag (repeatable)."
    ),
    strict: bool = STRICT,
    os_unlisted: bool = OS_UNLISTED,
    *,
    run: Run,
) -> None:
    """Print the CreateImage request body for an image and the oci-cli commands that upload and import it."""
    from imagepack.cli.parse import parse_choice
    from imagepack.oci.metadata import LaunchMode
    from imagepack.oci.objectstorage import ObjectUrl, parse_url
    from imagepack.verbs.import_request import ObjectLocation, import_request

    tuple_given = [
        flag
        for flag, value in (("--namespace", namespace), ("--bucket", bucket), ("--object", object_name))
        if value is not None
    ]
    location: ObjectUrl | ObjectLocation
    if uri is not None:
        if tuple_given or region is not None:
            extra = ", ".join(tuple_given + (["--region"] if region is not None else []))
            raise InvalidValueError(f"--uri names the object already; drop {extra}")
        location = parse_url(uri)
    elif len(tuple_given) == 3:
        assert namespace is not None and bucket is not None and object_name is not None
        location = ObjectLocation.checked(namespace, bucket, object_name, region)
    else:
        raise InvalidValueError("name the object: --uri URL, or --namespace, --bucket and --object")
    request = import_request(
        path,
        compartment_id=compartment,
        display_name=display_name,
        location=location,
        launch_mode=parse_choice(LaunchMode, launch_mode, "--launch-mode"),
        operating_system=os_name,
        operating_system_version=os_version,
        freeform_tags=tag,
        defined_tags=defined_tag,
        strict=strict,
        os_unlisted=os_unlisted,
    )
    run.show(request, lambda: _print_script(request, quiet=run.quiet), even_quiet=True)


def _print_script(request: ImportRequest, *, quiet: bool) -> None:
    """The body and the commands as a shell script: the body into the file the raw request reads."""
    from imagepack.verbs.import_request import BODY_FILE

    if not quiet:
        for problem in request.problems:
            print(f"imagepack: {problem.severity.value}: {describe_problem(problem)}", file=sys.stderr)
    # JSON never holds a raw newline inside a value, so no line of it can end the here-document early.
    body = json.dumps(request.body(), indent=2, ensure_ascii=False)
    print(f"# CreateImage request body ({request.source_format})")
    print(f"cat > {BODY_FILE} <<'JSON'\n{body}\nJSON")
    for command in request.commands():
        print(f"# {command.purpose}")
        print(command.shell())
