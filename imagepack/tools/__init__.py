"""The external programs imagepack drives: how each is found (programs), qemu-img, and qemu-nbd with the NBD
client that reads from it."""
