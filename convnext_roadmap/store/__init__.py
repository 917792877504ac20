"""What a study keeps on disk, and how it is written: records, the manifest, run locks.

Modules: files (atomic writes and file locks, the one way anything is written), record (the
typed run record), records (reading and writing them), manifest (study.json), locks (one lock
per run, so that no run trains twice), lookup (finding a run's record).
"""
