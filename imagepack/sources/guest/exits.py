"""How the inspecting child ends when it fails in a way the parent words itself (the parent never imports the
child, whose file system readers stay out of the parent process)."""

EXIT_MEMORY = 75  # out of its address space
EXIT_NBD = 76  # the NBD export it was handed failed
