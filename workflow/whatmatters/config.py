"""Reading a study file: plain data only, in bounded time and memory, one clear line otherwise.

A study file is read in two passes. The first walks PyYAML's event stream (an iterative
parser: no recursion, nothing built) and refuses, naming the key where it happens:
templating (YTE's `__use_yte__`, `__definitions__`), any explicit tag (`!!python/...`,
`!custom`), nesting deeper than MAX_DEPTH, and aliases whose expansion would exceed
MAX_NODES (a "billion laughs" file is a few lines that expand to billions of values).
The second builds the data with a safe loader that also refuses a key given twice. Before
both: at most MAX_BYTES, UTF-8 text. Nothing in a study is ever evaluated.

`study_file_for(configfiles)` is which file a Snakemake run reads: the one given with
`--configfile`, else config.yaml; the Snakefile and `whatmatters check` both read it here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from whatmatters.errors import StudyError, shown

DEFAULT_STUDY = "config.yaml"
MAX_BYTES = 1_000_000    # a study is a page of YAML; a generated one with 1,000 levels is ~100 KB
MAX_DEPTH = 32           # the deepest key of a valid study is 6 levels down
MAX_NODES = 200_000      # values after expanding aliases (the default study has ~600)
TEMPLATING_KEYS = ("__use_yte__", "__definitions__", "__variables__")
# The only tags a plain study resolves to; an explicit tag (`!!python/...`, `!foo`) is refused.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}


# libyaml's parser where PyYAML has it (10-20x faster on a long file); PyYAML's own names a
# syntax error better, so a file that has one is read again with it for the message.
_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeys:
    """A safe loader that refuses a key given twice in one mapping (plain YAML keeps the last)."""

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


class _FastUniqueKeyLoader(_UniqueKeys, _FastLoader):
    pass


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    pass


def _text(path: str | Path) -> str:
    """The file's text: at most MAX_BYTES of UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise StudyError(f"cannot read study config {path}: {e.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise StudyError(f"{path}: larger than {MAX_BYTES:,} bytes; a study file is a page of YAML")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw:
        raise StudyError(f"{path}: not a UTF-8 text file (UTF-16 or binary); save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise StudyError(f"{path}: not UTF-8 text (byte {e.start} on line {line}); save it as UTF-8") from None


def _where(path: list) -> str:
    out = ""
    for p in path[:6] if len(path) > 8 else path:   # a hostile file's path is long: its start names the key
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return (out + ("..." if len(path) > 8 else "")) or "(top level)"


def _check_events(text: str, name: str) -> None:
    """The first pass: StudyError at the first tag, templating key, over-deep nesting or
    alias bomb, naming the key where it is."""
    # One frame per open mapping or sequence: [kind, path of the next value, expecting a key, size].
    stack: list[list] = []
    path: list = []
    sizes: dict[str, int] = {}   # anchor -> values it stands for once expanded
    opened: list[tuple[str | None, int]] = []   # (anchor, nodes counted when it opened)
    nodes = 0

    def refuse(problem: str, event) -> None:
        line = event.start_mark.line + 1
        raise StudyError(f"{name}: {_where(path)} (line {line}): {problem}")

    def value_done() -> None:   # a value (scalar, alias or closed collection) is complete
        if stack:
            frame = stack[-1]
            if frame[0] == "seq":
                frame[3] += 1
                path[-1] = frame[3]
            else:
                frame[2] = True   # next: a key

    try:
        for event in yaml.parse(text, Loader=_FastLoader):
            if isinstance(event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                is_key = bool(stack) and stack[-1][0] == "map" and stack[-1][2]
                if isinstance(event, yaml.ScalarEvent) and is_key:
                    path[-1] = event.value if len(event.value) <= 64 else event.value[:64] + "..."
                    stack[-1][2] = False
                    if event.value in TEMPLATING_KEYS:
                        refuse("templating (YTE) is not allowed; a study is plain data, nothing in it is evaluated",
                               event)
                nodes += 1
                if event.tag is not None and event.tag != "!" and event.tag not in _PLAIN_TAGS:
                    refuse(f"YAML tag {shown(event.tag.replace('tag:yaml.org,2002:', '!!'))} is not allowed; "
                           "a study is plain data (strings, numbers, true/false, lists, mappings)", event)
                if isinstance(event, yaml.ScalarEvent):
                    if event.anchor:
                        sizes[event.anchor] = 1
                    if not is_key:
                        value_done()
                else:
                    if len(stack) >= MAX_DEPTH:
                        refuse(f"nested deeper than {MAX_DEPTH} levels; a study is at most a few levels deep",
                               event)
                    kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
                    stack.append([kind, None, True, 0])
                    path.append(None if kind == "map" else 0)
                    opened.append((event.anchor, nodes))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                stack.pop()
                path.pop()
                anchor, at = opened.pop()
                if anchor:
                    sizes[anchor] = nodes - at + 1
                value_done()
            elif isinstance(event, yaml.AliasEvent):
                nodes += sizes.get(event.anchor, 1)
                value_done()
            if nodes > MAX_NODES:
                refuse(f"more than {MAX_NODES:,} values once aliases (*name) are expanded; "
                       "write the study without nested aliases", event)
    except yaml.YAMLError:
        return   # the second pass names the syntax error with its line and column


def read_config(path: str | Path) -> dict:
    """A study file's data, read safely (see the module docstring); StudyError otherwise."""
    text = _text(path)
    _check_events(text, str(path))
    try:
        config = _load(text, str(path), _FastUniqueKeyLoader)
    except yaml.YAMLError:
        config = _load(text, str(path), _UniqueKeyLoader)   # raises, naming the error better
    if not isinstance(config, dict):
        got = "an empty file" if config is None else f"a {type(config).__name__}"
        raise StudyError(f"{path}: expected a mapping of study sections (datasets, factors, design, seeds, "
                         f"outcomes, ...), got {got}")
    return config


def _load(text: str, name: str, loader_class):
    """The YAML document in `text`; StudyError (one line: where, and what the parser expected)."""
    try:
        loader = loader_class(text)
        loader.name = name
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        if loader_class is not _UniqueKeyLoader:
            raise
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "; ".join(filter(None, [e.context, e.problem]))
        raise StudyError(f"{name} is not valid YAML{where}: {what}") from None
    except yaml.YAMLError as e:
        if loader_class is not _UniqueKeyLoader:
            raise
        raise StudyError(f"{name} is not valid YAML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise StudyError(f"{name}: nested too deeply to read") from None


def study_file_for(configfiles) -> str:
    """The study a Snakemake run reads: the file given with --configfile (one only: a
    study file is the whole study, never merged into another), else config.yaml."""
    files = [str(f) for f in configfiles or ()]
    if len(files) > 1:
        raise StudyError(f"--configfile: {len(files)} files given ({', '.join(files)}); give one study file: "
                         "it is the whole study, nothing is merged into it")
    return files[0] if files else DEFAULT_STUDY


def configfiles_in(argv: list[str]) -> list[str]:
    """The files a Snakemake command line gives with --configfile/--configfiles."""
    files, taking = [], False
    for arg in argv[1:]:
        if arg.startswith("--configfile=") or arg.startswith("--configfiles="):
            files.append(arg.split("=", 1)[1])
            taking = False
        elif arg in ("--configfile", "--configfiles"):
            taking = True
        elif taking and not arg.startswith("-"):
            files.append(arg)
        else:
            taking = False
    return files


def refuse_unsafe_configfiles(argv: list[str]) -> None:
    """Read each --configfile of a Snakemake command line as `read_config` does, and exit
    with one line (status 2) at the first that is not plain data. The workflow profiles
    call this while Snakemake reads them, which is before Snakemake reads (and templates)
    the --configfile itself: a study that would evaluate anything never reaches it."""
    import sys

    for f in configfiles_in(argv):
        try:
            _check_events(_text(f), f)
        except StudyError as e:
            print(f"whatmatters: invalid study: {e}", file=sys.stderr)
            sys.exit(2)


def startup_guard(argv: list[str]) -> None:
    """Refuse an unsafe --configfile of a snakemake command before Snakemake runs at all.

    Run at every start of the project's Python by `whatmatters_guard.pth`, which `make
    setup` puts in the venv's site-packages (it reaches here only when an argument starts
    with --configfile). So even a plain `snakemake --configfile FILE`, without the workflow
    profiles that do the same, never templates a study: Snakemake reads --configfile files
    with YTE before any workflow code runs. Exits the process with one line and status 2."""
    import os
    import sys

    program = os.path.basename(argv[0]) if argv else ""
    if not (program.startswith("snakemake") or program == "-m"):
        return
    try:
        refuse_unsafe_configfiles(argv)
    except SystemExit as e:          # inside site's .pth processing an exception is fatal noise
        sys.stderr.flush()
        os._exit(e.code if isinstance(e.code, int) else 2)
