"""Any untrusted tar: the scanner, its sparse maps and the checks on each member."""
