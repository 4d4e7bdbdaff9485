"""Experiment configs: a dataclass per theme whose values come from a named profile plus overrides.

A theme subclasses `ProfileConfig`, declares its knobs as typed fields (the defaults are the `quick`
values) and lists in `PROFILES` what `smoke` and `full` change. `for_profile("quick", epochs=None)`
treats `None` as "take the profile's value", so a notebook can pass its parameters cell straight in.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, ClassVar

from .core import ShammieError

__all__ = ["ConfigError", "ProfileConfig", "PROFILE_NAMES", "check_type", "COUNT_NAMES"]

PROFILE_NAMES = ("smoke", "quick", "full")

#: int knobs that count something (epochs, steps, seeds, samples, ...): 0 or less never makes sense
COUNT_NAMES = re.compile(r"(^|_)(epochs|steps|seeds|samples|n_train|n_test|batch_size|threads)$")


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
        cfg.check_limits()
        return cfg

    def validate(self) -> None:
        """Check relations between fields; subclasses raise ConfigError with the fix. Default: nothing."""

    #: how far past the largest profile value (usually `full`'s) an int knob may go before it is refused
    LIMIT_FACTOR: ClassVar[int] = 10
    #: explicit upper limits for int knobs, {name: largest allowed}; they replace the factor rule
    LIMITS: ClassVar[dict[str, int]] = {}

    @classmethod
    def limit(cls, name: str) -> tuple[int | None, str]:
        """The largest value int knob `name` may take, and where that limit comes from (for messages)."""
        if name in cls.LIMITS:
            return cls.LIMITS[name], f"{cls.__name__}.LIMITS"
        default = next((f.default for f in dataclasses.fields(cls) if f.name == name), None)
        values = [p.get(name, default) for p in cls.PROFILES.values()]
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if not ints or max(ints) <= 0:
            return None, ""
        top = max(ints)
        where = max((p for p in cls.PROFILES if isinstance(cls.PROFILES[p].get(name, default), int)),
                    key=lambda p: cls.PROFILES[p].get(name, default))
        return cls.LIMIT_FACTOR * top, f"{cls.LIMIT_FACTOR}x {top}, the largest value of any profile ({where})"

    def check_limits(self) -> None:
        """Refuse int knobs that are negative, counts below 1, and sizes far past every profile's.

        A size past the limit could not fit in memory or time on the machines this workbook is
        made for; the message names the limit. A theme allows more with `LIMITS = {name: n}`.
        """
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "profile" or not isinstance(value, int) or isinstance(value, bool):
                continue
            if hints.get(f.name) not in (int, int | None, typing.Optional[int]):  # noqa: UP045
                continue
            if COUNT_NAMES.search(f.name) and value < 1:
                raise ConfigError(f"{f.name}={value} must be at least 1: it counts {f.name.split('_')[-1]}")
            if value < 0:
                raise ConfigError(f"{f.name}={value} must not be negative")
            top, why = self.limit(f.name)
            if top is not None and value > top:
                raise ConfigError(
                    f"{f.name}={value} is past the limit {top} ({why}): a run of that size cannot fit "
                    f"in memory or time on the machines this workbook is made for"
                )

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
        cfg.check_limits()
        return cfg
