"""Boot tests: a disk booted in qemu-system-x86_64 as OCI would launch it. `machine` builds the virtual machine's
command line (devices per launch mode, firmware, accelerator), `console` reads its output for the stages of a
boot, `run` runs the whole test and reports how far it got."""
