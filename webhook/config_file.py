"""Read the webhook's configuration file (edge: the file system and YAML decoding)."""

from __future__ import annotations

from pathlib import Path

import yaml

from webhook.config import Config, ConfigError, parse_config


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(
            f"config {path} is not valid YAML{where}" + (f": {problem}" if problem else "")
        ) from None
    return parse_config({} if data is None else data)
