"""Build-server mode: a manifest of outputs (`manifest.py`), planned and split into shards (`plan.py`), skipped
when their record says nothing changed (`record.py`), built in parallel worker processes (`run.py`) and reported
with their checksums (`report.py`)."""
