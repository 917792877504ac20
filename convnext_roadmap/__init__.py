"""Training, records and reports for the roadmap study (the machinery behind runner.py).

    from roadmap import load_run
    model = load_run("results/cpu", "convnext_t", seed=0)   # a trained network, eval mode
"""


def __getattr__(name: str):  # lazy: importing roadmap does not import torch
    if name == "load_run":
        from .weights import load_run
        return load_run
    raise AttributeError(f"module 'roadmap' has no attribute {name!r}")
