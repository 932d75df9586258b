"""A .oci archive written: the archive in one pass (`pack`), its metadata chosen from what was given, the guest and
the partition table."""
