"""Reading a study file: safe YAML only, and a clear message for a file that is not one."""

from __future__ import annotations

from pathlib import Path

import yaml

from whatmatters.errors import StudyError


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                mark = key_node.start_mark
                raise StudyError(f"{self.name} is not valid (line {mark.line + 1}, column {mark.column + 1}): "
                                 f"key {key!r} is given twice in one mapping")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_config(path: str | Path) -> dict:
    """Load a study config with yaml.safe_load (nothing in a config is ever executed)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise StudyError(f"cannot read study config {path}: {e.strerror}") from None
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = str(path)
        try:
            config = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:  # one line: where, and what the parser expected
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "; ".join(filter(None, [e.context, e.problem]))
        raise StudyError(f"{path} is not valid YAML{where}: {what}") from None
    except yaml.YAMLError as e:
        raise StudyError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(config, dict):
        got = "an empty file" if config is None else f"a {type(config).__name__}"
        raise StudyError(f"{path}: expected a mapping of study sections (datasets, factors, design, seeds, "
                         f"outcomes, ...), got {got}")
    return config
