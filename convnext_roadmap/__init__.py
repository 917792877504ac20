"""Training, records and reports for the roadmap study (the machinery behind runner.py).

    from convnext_roadmap import load_run
    model = load_run("results/cpu", "convnext_t", seed=0)   # a trained network, eval mode

Packages, each one concern: config (studies and recipes), data (data sets), train (one run
with Lightning), store (records, manifests, locks: what is kept on disk), study (plan and run
a study's runs), report (tables and figures from the records alone; imports no Lightning).
"""


def __getattr__(name: str):  # lazy: importing convnext_roadmap does not import torch
    if name == "load_run":
        from .train.weights import load_run

        return load_run
    raise AttributeError(f"module 'convnext_roadmap' has no attribute {name!r}")
