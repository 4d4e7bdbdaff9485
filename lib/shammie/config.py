"""Experiment configs: a dataclass per theme whose values come from a named profile plus overrides.

A theme subclasses `ProfileConfig`, declares its knobs as typed fields (the defaults are the `quick`
values) and lists in `PROFILES` what `smoke` and `full` change. `for_profile("quick", epochs=None)`
treats `None` as "take the profile's value", so a notebook can pass its parameters cell straight in.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, ClassVar

from .core import ShammieError

__all__ = ["ConfigError", "ProfileConfig", "PROFILE_NAMES", "check_type"]

PROFILE_NAMES = ("smoke", "quick", "full")


class ConfigError(ShammieError, ValueError):
    """An unknown profile, an unknown knob, or a value of the wrong type."""


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_type(name: str, value: Any, annotation: Any) -> Any:
    """Return `value` if it fits `annotation` (ints pass as floats, lists as tuples), else raise ConfigError."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(annotation):
            try:
                return check_type(name, value, arm)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{name}={value!r} has the wrong type: expected {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation in (str, bool):
        if isinstance(value, annotation):
            return value
    elif origin is tuple or annotation is tuple:
        if isinstance(value, (list, tuple)):
            args = typing.get_args(annotation)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(check_type(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value))
            if args and len(args) != len(value):
                raise ConfigError(f"{name} needs {len(args)} items, got {len(value)}")
            if args:
                return tuple(check_type(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
            return tuple(value)
    elif origin is list or annotation is list:
        if isinstance(value, (list, tuple)):
            args = typing.get_args(annotation)
            return [check_type(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value)] if args else list(value)
    elif origin is dict or annotation is dict:
        if isinstance(value, dict):
            return dict(value)
    elif origin is typing.Literal:
        if value in typing.get_args(annotation):
            return value
        raise ConfigError(f"{name}={value!r} is not one of {list(typing.get_args(annotation))}")
    elif isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
    else:  # an annotation we do not check
        return value
    raise ConfigError(f"{name}={value!r} has the wrong type: expected {_type_name(annotation)}")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """Base class: `profile` plus the theme's fields; build instances with `for_profile`."""

    profile: str = "quick"

    #: per profile, the fields that differ from the dataclass defaults (which are the quick values)
    PROFILES: ClassVar[dict[str, dict[str, Any]]] = {"smoke": {}, "quick": {}, "full": {}}

    @classmethod
    def for_profile(cls, profile: str = "quick", **overrides: Any) -> ProfileConfig:
        """The config for `profile` with `overrides` applied; `None` overrides mean "the profile's value"."""
        if profile not in cls.PROFILES:
            raise ConfigError(
                f"unknown profile {profile!r}{_suggest(str(profile), cls.PROFILES)}: "
                f"choose one of {', '.join(cls.PROFILES)}"
            )
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "profile"]
        unknown = [k for k in overrides if k not in names]
        if unknown:
            k = unknown[0]
            raise ConfigError(
                f"unknown setting {k!r}{_suggest(k, names)} for {cls.__name__}; "
                f"its settings are: {', '.join(names)}"
            )
        values = dict(cls.PROFILES[profile])
        values.update({k: v for k, v in overrides.items() if v is not None})
        checked = {k: check_type(k, v, hints[k]) for k, v in values.items()}
        cfg = cls(profile=profile, **checked)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check relations between fields; subclasses raise ConfigError with the fix. Default: nothing."""

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> ProfileConfig:
        """A copy with `changes` applied and type-checked."""
        hints = typing.get_type_hints(type(self))
        names = {f.name for f in dataclasses.fields(self)}
        for k in changes:
            if k not in names:
                raise ConfigError(f"unknown setting {k!r}{_suggest(k, names)} for {type(self).__name__}")
        checked = {k: check_type(k, v, hints[k]) for k, v in changes.items()}
        cfg = dataclasses.replace(self, **checked)
        cfg.validate()
        return cfg
