"""Small builders the tests share."""

from __future__ import annotations

from typing import Any

from convnext_roadmap.store.record import Record


def record(**fields: Any) -> Record:
    """A run record of the fields given, with the required ones filled in (a done record: top1,
    top5 and val_loss default to numbers)."""
    base: dict[str, Any] = {
        "study": "s",
        "step": "convnext_t",
        "seed": 0,
        "config_hash": "0" * 16,
        "status": "done",
        "top1": 50.0,
        "top5": 90.0,
        "val_loss": 1.0,
    }
    return Record.from_dict({**base, **fields})


# A study folder as the runner leaves it (records, study.json, Lightning metrics.csv files),
# written with the project's own writers and no training: tests/test_report.py and the figure
# gallery (tests/test_gallery.py) build theirs with these.
EPOCHS = 4


def metrics_csv_file(path, final_top1: float, rng, epochs: int = EPOCHS) -> None:
    """A sparse Lightning-CSVLogger-like file: train rows, then two validations per epoch."""
    import pandas as pd

    rows, step = [], 0
    for epoch in range(epochs):
        for _ in range(3):
            rows.append({"epoch": epoch, "step": step, "train_loss": 1.5 / (epoch + 1)})
            step += 10
        for half in (1, 2):
            progress = (epoch + half / 2) / epochs
            top1 = final_top1 - 12 * (1 - progress) ** 2 + rng.normal(0, 0.05)
            rows.append(
                {
                    "epoch": epoch,
                    "step": step - 1,
                    "val_top1": top1,
                    "val_top5": min(99.9, top1 + 6),
                    "val_loss": 0.3 + (1 - progress),
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["epoch", "step", "train_loss", "val_loss", "val_top1", "val_top5"]).to_csv(
        path, index=False
    )


def budget_hash(config_hash: str, budget: int | None) -> str:
    """A run's config hash at a budget (each budget is another config)."""
    return config_hash if budget is None else f"{config_hash}{budget:02d}"


def make_record(
    study, step, seed: int, top1, config_hash: str = "abc123", rng=None, budget: int | None = None, **fields: Any
) -> Record:
    """A run's record written as the runner writes it (store.records.write_record): done with
    `top1`, failed when it is None; with `rng`, its metrics.csv too. `budget`: a run of a study
    of budgets; `fields` override any other field."""
    from convnext_roadmap.store.record import record_filename, run_name
    from convnext_roadmap.store.records import write_record

    failed = top1 is None
    epochs = budget or EPOCHS
    name = run_name(step.slug, seed, budget)
    log_dir = f"logs/{name}"
    if not failed and rng is not None:
        metrics_csv_file(study / log_dir / "metrics.csv", top1, rng, epochs)
    index = step.index if step.index is not None else 20
    digest = budget_hash(config_hash, budget)
    data = {
        "study": study.name,
        "step": step.slug,
        "step_index": step.index,
        "label": step.label,
        "phase": step.phase,
        "parent": step.parent,
        "seed": seed,
        "status": "failed" if failed else "done",
        "failure": "loss became NaN" if failed else None,
        "failed_epoch": 2 if failed else None,
        "top1": top1,
        "top5": None if failed else min(100.0, top1 + 6.0),
        "val_loss": None if failed else 0.3,
        "params": int(20e6 + index * 1e5),
        "gmacs_train_res": 4.0 * (64 / 224) ** 2,
        "gmacs_224": 4.0,
        "train_throughput": 900.0 - 20 * index,
        "eval_throughput": 3000.0 - 50 * index,
        "wall_time_s": 100.0 + seed,
        "epochs": epochs,
        "budget_epochs": budget,
        "dataset": "fashion_mnist",
        "resolution": 64,
        "preset": "smoke",
        "width_mult": 0.25,
        "num_classes": 10,
        "config_hash": digest,
        "git_commit": "0" * 40,
        "git_dirty": False,
        "versions": {"torch": "x"},
        "device": "cpu",
        "threads": 2,
        "finished_at": "2024-01-01T00:00:00",
        "log_dir": log_dir,
        **fields,
    }
    record = Record.from_dict(data)
    write_record(study / "runs" / record_filename(name, digest), record)
    return record


def write_manifest(
    study, steps, seeds, config_hash: str = "abc123", description: str = "", budgets: list[int] | None = None
) -> None:
    """The study's study.json (store.manifest.write_manifest) naming these runs as current."""
    from convnext_roadmap.store.manifest import step_entry
    from convnext_roadmap.store.manifest import write_manifest as write

    study.mkdir(parents=True, exist_ok=True)
    write(
        study,
        {
            "study": study.name,
            "config": {"description": description},
            "budgets": budgets,
            "steps": [step_entry(s) for s in steps],
            "runs": [
                {"step": s.slug, "seed": k, "budget_epochs": b, "config_hash": budget_hash(config_hash, b)}
                for b in (budgets or [None])
                for s in steps
                for k in seeds
            ],
        },
    )
