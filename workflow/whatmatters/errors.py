"""Errors that reach the user as one clear message instead of a traceback."""


class WhatmattersError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class PermanentError(WhatmattersError):
    """What a retry cannot fix (no GPU, unreadable data, bad settings): a job fails at once."""


class StudyError(PermanentError):
    """The study (config.yaml) is malformed; the message names the key and the valid choices."""


class DataError(PermanentError):
    """A dataset cannot be prepared or loaded; the message names the file or dataset."""


class RunTableError(WhatmattersError):
    """Run files are missing or unreadable; the message names them."""


def shown(value, limit: int = 80) -> str:
    """A value as a message shows it: its repr cut to `limit` characters (a hostile value can
    be huge), with a hint where YAML 1.1 read something other than what was written."""
    text = repr(value)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text):,} characters)"
    if isinstance(value, bool):
        text += (" (YAML reads unquoted yes/no/on/off/true/false as true or false: "
                 f"quote a name or word, e.g. '{'on' if value else 'off'}')")
    elif isinstance(value, str) and _looks_numeric(value):
        text += " (YAML 1.1 reads a number like 1e-3 as a string: write 1.0e-3)"
    return text


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def some(names, limit: int = 20) -> str:
    """Names joined for a message, the first `limit` of them and how many more."""
    names = [str(n) for n in names]
    more = f", ... ({len(names) - limit:,} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
