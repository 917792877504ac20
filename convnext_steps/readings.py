"""Readings: the paper's ambiguities, each a switch over every step of a study.

    >>> step = apply_readings(get_step("layer_norm"), {"conv_bias": "authors"})

A reading sets one NetSpec field on every step that has that field at NetSpec's default, so
a step that set the field itself keeps its value. Why each default: `tables.py`.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .spec import LAYER_SCALE_INIT, ConvBiasKind, InitKind, NetSpec
from .step import Step, StepError

# reading -> (NetSpec field, {value: field value}); the first value is the default.
_FIELDS: dict[str, tuple[str, dict[str, Any]]] = {
    "init": ("init", {v: v for v in typing.get_args(InitKind)}),
    "conv_bias": ("conv_bias", {v: v for v in typing.get_args(ConvBiasKind)}),
    "layer_scale": ("layer_scale_init", {"last_step": None, "every_step": LAYER_SCALE_INIT}),
}
READINGS: dict[str, tuple[str, ...]] = {name: tuple(values) for name, (_, values) in _FIELDS.items()}
_DEFAULTS = NetSpec()


def apply_readings(step: Step, readings: Mapping[str, str]) -> Step:
    """The step under the given readings (reading name -> value; the others at their
    default). Reference models are returned unchanged. A field a reading sets to the value
    the step's own change sets (layer scale 1e-6 at convnext_t) is no longer its change."""
    for name, value in readings.items():
        if name not in READINGS:
            raise StepError(f"unknown reading {name!r}; known: {', '.join(READINGS)}")
        if value not in READINGS[name]:
            raise StepError(f"reading {name}={value!r}; allowed: {', '.join(READINGS[name])}")
    if not isinstance(step.spec, NetSpec):
        return step
    spec, changed = step.spec, set(step.changed_fields)
    for name, value in readings.items():
        field, values = _FIELDS[name]
        target = values[value]
        if target == getattr(_DEFAULTS, field):
            continue
        if getattr(spec, field) == getattr(_DEFAULTS, field):
            spec = replace(spec, **{field: target})
        elif getattr(spec, field) == target:
            changed.discard(field)
    return replace(step, spec=spec, changed_fields=frozenset(changed))
