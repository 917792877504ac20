"""`--set KEY=VALUE` on the command line: any key of a study, nested keys by dots.

    --set train.lr=2e-3 --set seeds=[0,1,2] --set train.train_subset=null

VALUE is read as YAML (roadmap.config.parse_yaml: `1e-3` is a float), then the study is
typed and validated exactly as a YAML file is (an unknown key or a wrong type is the same
one-line error). Later `--set`s win over earlier ones and over every other flag.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError
from .schema import merge
from .yaml_io import DuplicateKeyError, parse_yaml


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """The nested mapping of `KEY=VALUE` items, in order."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise ConfigError(f"--set {item!r} must be KEY=VALUE, e.g. --set train.lr=2e-3 or --set seeds=[0,1,2]")
        try:
            value = parse_yaml(text)
        except DuplicateKeyError as error:
            raise ConfigError(f"--set {item!r}: {str(error).split(' (lines')[0]}; keep one of them") from None
        except yaml.YAMLError:
            raise ConfigError(
                f"--set {item!r}: {text!r} is not a YAML value; quote it for the shell, e.g. --set 'seeds=[0, 1]'"
            ) from None
        for part in reversed(parts):
            value = {part.strip(): value}
        result = merge(result, value)
    return result
