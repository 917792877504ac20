"""A study: its plan (every run and what is left of it), its cost, and training it, one
runner or several at once (--jobs).

Modules: plan, cost, execute, parallel.
"""
