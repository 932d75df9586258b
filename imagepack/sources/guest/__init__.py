"""Reading inside a source's guest, offline: its storage, file systems, operating system and configuration, parsed
in a child process under limits (`reader.inspect_image`)."""
