"""`imagepack url`: build an Object Storage URL (from its parts, or a bucket PAR and an object name) or parse one."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from imagepack.cli.output import print_warnings
from imagepack.cli.run import Run, reporting
from imagepack.core.errors import InvalidValueError

if TYPE_CHECKING:
    from imagepack.oci.objectstorage import ObjectUrl

EXAMPLES = """\b
Examples:
  imagepack url --region us-ashburn-1 --namespace mytenancy --bucket images --object web/disk.qcow2
  imagepack url --par https://objectstorage.us-ashburn-1.oraclecloud.com/p/TOKEN/n/ns/b/images/o/ --object disk.oci
  imagepack url --json https://objectstorage.eu-frankfurt-1.oraclecloud.com/n/ns/b/images/o/disk.qcow2"""

_KIND_TEXT = {
    "object": "an object URL",
    "bucket-par": "a bucket PAR (pre-authenticated request for a bucket)",
    "object-par": "an object PAR (pre-authenticated request for one object)",
}


def register(app: typer.Typer) -> None:
    app.command("url", epilog=EXAMPLES)(url_command)


@reporting
def url_command(
    url: str | None = typer.Argument(None, metavar="[URL]", help="An Object Storage URL to parse."),
    region: str | None = typer.Option(None, "--region", metavar="REGION", help="Region, e.g. us-ashburn-1."),
    namespace: str | None = typer.Option(None, "--namespace", metavar="NAMESPACE", help="Object Storage namespace."),
    bucket: str | None = typer.Option(None, "--bucket", metavar="BUCKET", help="Bucket name."),
    object_name: str | None = typer.Option(None, "--object", metavar="NAME", help="Object name (slashes allowed)."),
    realm: str | None = typer.Option(None, "--realm", metavar="REALM", help="oc1, oc2, ... (default: the region's)."),
    dedicated: bool = typer.Option(False, "--dedicated", help="The namespace-prefixed endpoint (customer-oci.com)."),
    par: str | None = typer.Option(None, "--par", metavar="URL", help="A bucket PAR to append --object to."),
    *,
    run: Run,
) -> None:
    """Print an Object Storage URL built from its parts, or from a bucket PAR and an object name; or parse one."""
    from imagepack.oci.objectstorage import build_url, parse_url

    parts = {"--region": region, "--namespace": namespace, "--bucket": bucket, "--realm": realm}
    typed = [flag for flag, value in parts.items() if value is not None] + (["--dedicated"] if dedicated else [])
    if url is not None:
        if typed or par is not None or object_name is not None:
            given = typed + (["--par"] if par is not None else []) + (["--object"] if object_name else [])
            raise InvalidValueError(f"a URL to parse takes none of {', '.join(given)}")
        found = parse_url(url)
        run.show(found, lambda: _print(found, quiet=run.quiet, parsed=True), even_quiet=True)
    elif par is not None:
        if typed:
            raise InvalidValueError(f"--par takes only --object, not {', '.join(typed)}")
        found = parse_url(par)
        if object_name is None and found.object is None:
            raise InvalidValueError("a bucket PAR needs an object name appended: pass --object NAME")
        built = found if object_name is None else found.with_object(object_name)
        if not run.quiet and not run.json_output:
            print(f"imagepack: note: --par is {_KIND_TEXT[found.kind.value]}", file=sys.stderr)
        run.show(built, lambda: _print(built, quiet=run.quiet, parsed=False), even_quiet=True)
    else:
        missing = [flag for flag, value in list(parts.items())[:3] if value is None]
        missing += ["--object"] if object_name is None else []
        if missing:
            raise InvalidValueError(
                f"give a URL to parse, --par URL --object NAME, or all of --region, --namespace, --bucket and "
                f"--object (missing: {', '.join(missing)})",
            )
        assert region is not None and namespace is not None and bucket is not None and object_name is not None
        built = build_url(
            region=region,
            namespace=namespace,
            bucket=bucket,
            object_name=object_name,
            realm=realm,
            dedicated=dedicated,
        )
        run.show(built, lambda: _print(built, quiet=run.quiet, parsed=False), even_quiet=True)


def _print(found: ObjectUrl, *, quiet: bool, parsed: bool) -> None:
    if not quiet:
        print_warnings(found.notes)
    if not parsed:
        print(found.to_url())
        return
    print(f"kind: {_KIND_TEXT[found.kind.value]}")
    for key in ("region", "realm", "domain", "namespace", "bucket", "object"):
        value = getattr(found, key)
        print(f"{key}: {_printable(value) if value is not None else '(none)'}")
    print(f"par: {'yes' if found.par is not None else 'no'}")
    print(f"dedicated: {'yes' if found.dedicated else 'no'}")


def _printable(text: str) -> str:
    """A name as one safe line: an object name may hold control characters a terminal would act on."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
