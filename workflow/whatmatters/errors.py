"""Errors that reach the user as one clear message instead of a traceback."""


class WhatmattersError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class StudyError(WhatmattersError):
    """The study (config.yaml) is malformed; the message names the key and the valid choices."""


class DataError(WhatmattersError):
    """A dataset cannot be prepared or loaded; the message names the file or dataset."""


class RunTableError(WhatmattersError):
    """Run files are missing or unreadable; the message names them."""
