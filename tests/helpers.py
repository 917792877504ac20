"""Small builders the tests share."""

from __future__ import annotations

from typing import Any

from convnext_roadmap.store.record import Record


def record(**fields: Any) -> Record:
    """A run record of the fields given, with the required ones filled in (a done record: top1,
    top5 and val_loss default to numbers)."""
    base: dict[str, Any] = {"study": "s", "step": "convnext_t", "seed": 0, "config_hash": "0" * 16, "status": "done",
                            "top1": 50.0, "top5": 90.0, "val_loss": 1.0}
    return Record.from_dict({**base, **fields})
