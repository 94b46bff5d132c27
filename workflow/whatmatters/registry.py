"""A registry maps a level's `kind` to the small function that builds it.

A builder's keyword-only parameters are the level's settings: their annotations give
the types (a `Literal[...]` of strings: the only values allowed) and their defaults the
defaults (no default = required). Positional parameters are what the trainer passes in
(a model, the parameters, ...).
Nothing outside a factor's module switches on kind names.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from whatmatters.errors import StudyError, shown

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Setting:
    name: str
    types: tuple[type, ...]  # accepted Python types after YAML loading
    default: Any  # REQUIRED when the setting has no default
    choices: tuple[str, ...] | None = None  # the values a Literal[...] setting allows


@dataclass(frozen=True)
class Kind:
    name: str
    build: Callable
    settings: dict[str, Setting]
    doc: str
    batchable: bool = True  # several seeds can train as one stacked model (whatmatters.train)


def _choices(annotation) -> tuple[str, ...] | None:
    """The values of a Literal[...] annotation, else None."""
    return typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None


def _accepted_types(annotation) -> tuple[type, ...]:
    """Python types a YAML value may have for an annotation (float also takes int)."""
    if isinstance(annotation, str):  # postponed annotations
        annotation = eval(annotation, {"float": float, "int": int, "bool": bool, "str": str})
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for a in typing.get_args(annotation) for t in _accepted_types(a))
    if annotation is type(None):
        return (type(None),)
    if typing.get_origin(annotation) is typing.Literal:
        return tuple(dict.fromkeys(type(a) for a in typing.get_args(annotation)))
    if annotation is float:
        return (float, int)
    if annotation in (int, bool, str):
        return (annotation,)
    raise TypeError(f"unsupported setting annotation {annotation!r}")


def _type_names(accepted: tuple[type, ...]) -> str:
    names = {float: "number", int: "integer", bool: "true/false", str: "string", type(None): "null"}
    out = [names[t] for t in accepted if not (t is int and float in accepted)]
    return " or ".join(out)


class Registry:
    """Kinds of one factor (or of datasets). `common` settings are accepted by every kind
    and consumed by the trainer, not the builder (e.g. a schedule's batch size)."""

    def __init__(self, factor: str, common: tuple[Setting, ...] = ()):
        self.factor = factor
        self.common = {s.name: s for s in common}
        self._kinds: dict[str, Kind] = {}

    def register(self, name: str, *, batchable: bool = True):
        """Register a builder as kind `name`. `batchable=False` marks a kind whose runs
        cannot train with other seeds stacked into one model (an optimizer that is not
        elementwise, a network that draws its own random numbers): they train one at a time."""

        def decorator(fn: Callable) -> Callable:
            hints = typing.get_type_hints(fn)
            settings = {
                p.name: Setting(p.name, _accepted_types(hints[p.name]), p.default, _choices(hints[p.name]))
                for p in inspect.signature(fn).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY
            }
            doc = " ".join(inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].split())
            self._kinds[name] = Kind(name, fn, settings, doc, batchable)
            return fn

        return decorator

    def kinds(self) -> list[str]:
        return list(self._kinds)

    def kind(self, name: str) -> Kind:
        try:
            return self._kinds[name]
        except KeyError:
            raise StudyError(
                f"unknown {self.factor} kind {name!r}; valid kinds: {', '.join(self._kinds)}"
            ) from None

    def settings(self, kind: str) -> dict[str, Setting]:
        """Every setting a level of this kind accepts: the common ones, then the kind's own."""
        return {**self.common, **self.kind(kind).settings}

    def resolve(self, where: str, kind: str, given: dict) -> dict:
        """Check a level's settings and fill in defaults.

        `where` names the level in messages (e.g. "factors.optimizer.levels[2] (adam)").
        Returns {setting: value} for every accepted setting. Raises StudyError naming the
        offending key and the valid choices.
        """
        allowed = self.settings(self.kind(kind).name)
        resolved = {}
        for key, value in given.items():
            if key not in allowed:
                valid = ", ".join(allowed) or "none"
                raise StudyError(
                    f"{where}: unknown setting {key!r} for {self.factor} kind {kind!r}; "
                    f"valid settings: {valid}"
                )
            setting = allowed[key]
            # bool is an int in Python; a YAML `true` must not pass as a number.
            ok = isinstance(value, setting.types) and not (
                isinstance(value, bool) and bool not in setting.types
            )
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise StudyError(
                    f"{where}.{key}: expected a finite {_type_names(setting.types)}, "
                    f"got {shown(value)}"
                )
            if setting.choices is not None and value not in setting.choices:
                raise StudyError(f"{where}.{key}: expected one of {', '.join(setting.choices)}, got {shown(value)}")
            resolved[key] = float(value) if float in setting.types and type(value) is int else value
        for key, setting in allowed.items():
            if key not in resolved:
                if setting.default is REQUIRED:
                    raise StudyError(
                        f"{where}: missing required setting {key!r} for {self.factor} kind {kind!r}"
                    )
                resolved[key] = setting.default
        return {key: resolved[key] for key in allowed}  # canonical order, whatever the YAML's

    # The catalog (whatmatters.catalog): the same kinds and settings as plain JSON, so that a
    # study is checked without importing the builders' modules (torch).
    _TYPE_NAMES = {float: "float", int: "int", bool: "bool", str: "str", type(None): "null"}

    def to_catalog(self) -> dict:
        def setting(s: Setting) -> dict:
            out = {"types": [self._TYPE_NAMES[t] for t in s.types]}
            if s.choices is not None:
                out["choices"] = list(s.choices)
            return out if s.default is REQUIRED else {**out, "default": s.default}

        return {"common": {n: setting(s) for n, s in self.common.items()},
                "kinds": {k.name: {"doc": k.doc, "batchable": k.batchable,
                                   "settings": {n: setting(s) for n, s in k.settings.items()}}
                          for k in self._kinds.values()}}

    @classmethod
    def from_catalog(cls, factor: str, catalog: dict) -> Registry:
        """A registry of `catalog`'s kinds and settings (see to_catalog), without builders."""
        types = {v: t for t, v in cls._TYPE_NAMES.items()}

        def setting(name: str, s: dict) -> Setting:
            choices = tuple(s["choices"]) if "choices" in s else None
            return Setting(name, tuple(types[t] for t in s["types"]), s.get("default", REQUIRED), choices)

        registry = cls(factor, tuple(setting(n, s) for n, s in catalog["common"].items()))
        for name, k in catalog["kinds"].items():
            registry._kinds[name] = Kind(name, None, {n: setting(n, s) for n, s in k["settings"].items()},
                                         k["doc"], k["batchable"])
        return registry

    def build(self, kind: str, settings: dict, *args):
        """Call the kind's builder with the trainer's arguments and the level's own settings."""
        own = {k: v for k, v in settings.items() if k not in self.common}
        return self.kind(kind).build(*args, **own)
