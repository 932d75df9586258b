"""The part size `oci os object put` uploads in by default (its --part-size, in MiB), which its checksums follow."""

OBJECT_PUT_PART_SIZE = 128 * 1024**2
