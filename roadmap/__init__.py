"""Training, records and reports for the roadmap study (the machinery behind runner.py)."""
