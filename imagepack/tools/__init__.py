"""The external programs imagepack drives: qemu-img, and qemu-nbd with the NBD client that reads from it."""
