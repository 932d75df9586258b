"""Opening what the user gave: a disk, a .oci archive's, an OVA's or a GCE tarball's disk, any of them
compressed (`open.open_source`)."""
