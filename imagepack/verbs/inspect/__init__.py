"""Reading a guest offline: its storage, file systems, operating system, boot set-up and the configuration that
decides whether it boots in a cloud; and the readiness rules built on what was read."""
