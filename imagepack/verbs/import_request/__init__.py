"""The CreateImage request that imports an image from Object Storage (SPEC §3), filled in from the file itself (its
format, launch mode and operating system), refused where OCI's import would refuse it, and the oci-cli commands
that upload the file and make the request. imagepack uploads nothing: it hands over what that step needs.

`request` holds the request and its commands, `values` checks what the user typed, `build` reads the file.
"""

from imagepack.verbs.import_request.build import import_request
from imagepack.verbs.import_request.request import BODY_FILE, IAAS_API_VERSION, Command, ImportRequest, ObjectLocation
from imagepack.verbs.import_request.values import (
    check_compartment_ocid,
    check_display_name,
    parse_defined_tags,
    parse_freeform_tags,
)

__all__ = [
    "BODY_FILE",
    "IAAS_API_VERSION",
    "Command",
    "ImportRequest",
    "ObjectLocation",
    "check_compartment_ocid",
    "check_display_name",
    "import_request",
    "parse_defined_tags",
    "parse_freeform_tags",
]
