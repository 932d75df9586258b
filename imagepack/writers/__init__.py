"""Making outputs: disk formats, .oci archives, one-pass compressed members, GCE tarballs, stream-optimized
VMDKs, GPT moves and sample disks."""
