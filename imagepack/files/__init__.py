"""Writing files: outputs whole or not at all, checked writes, renames that never replace, owner-named
temporaries, reproducible times, sparse copies and the checksums computed as bytes pass."""
