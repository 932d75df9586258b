"""What every module stands on: errors and problems, progress, sizes, signals, child processes, the standard
descriptors and inputs opened once."""
