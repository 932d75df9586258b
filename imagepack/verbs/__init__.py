"""The library behind each command: `cli/X.py` parses arguments and prints, `verbs/X` does the work."""
