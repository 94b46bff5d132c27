"""Reading a study file: safe YAML only, and a clear message for a file that is not one."""

from __future__ import annotations

from pathlib import Path

import yaml

from whatmatters.errors import StudyError


def read_config(path: str | Path) -> dict:
    """Load a study config with yaml.safe_load (nothing in a config is ever executed)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise StudyError(f"cannot read study config {path}: {e.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise StudyError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(config, dict):
        raise StudyError(f"{path}: expected a mapping of study sections, got {type(config).__name__}")
    return config
