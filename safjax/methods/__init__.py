"""The training methods, registered in one place.

A method is built by a factory that owns its settings and returns a `Method` (the Optax
pattern): ``safjax.methods.get_method("tbptt", truncation=4, block_size=2)`` or, directly,
``safjax.methods.tbptt.tbptt(truncation=4, block_size=2)``. ``METHODS`` maps each name to its
factory; nothing outside a method's own file branches on its name. A factory's arguments are its
settings: each has a default that means "off" (0 or False) and a line under ``Args:`` in the
factory's docstring, which becomes the help of the ``experiments.train`` flag of the same name.
A new method is one file and one line here (docs/extending.md).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable

from safjax.methods import bptt, ottt_a, ottt_o, saf_e, saf_f, sltt, spike_rep, tbptt
from safjax.methods.base import Method, StepOutput

METHODS: dict[str, Callable[..., Method]] = {
    "bptt": bptt.bptt,
    "tbptt": tbptt.tbptt,
    "ottt_a": ottt_a.ottt_a,
    "ottt_o": ottt_o.ottt_o,
    "saf_e": saf_e.saf_e,
    "saf_f": saf_f.saf_f,
    "spike_rep": spike_rep.spike_rep,
    "sltt": sltt.sltt,
    "sltt_k": sltt.sltt_k,
}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One argument of a method factory: its default ("off") value, type and help line."""

    name: str
    default: Any
    type: type
    help: str


def _argument_help(docstring: str) -> dict[str, str]:
    """``{argument: help}`` from a Google-style ``Args:`` section (continuation lines joined)."""
    found, current, inside = {}, None, False
    for line in inspect.cleandoc(docstring or "").splitlines():
        if line.strip() == "Args:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break  # the next section
        match = re.match(r"^\s{2,4}(\w+):\s*(.*)$", line)
        if match:
            current = match.group(1)
            found[current] = match.group(2)
        elif current and line.strip():
            found[current] += " " + line.strip()
    return found


def settings_of(name: str) -> dict[str, Setting]:
    """The settings of method ``name``: its factory's arguments, in order."""
    factory = _factory(name)
    helps = _argument_help(factory.__doc__)
    settings = {}
    for parameter in inspect.signature(factory).parameters.values():
        default = parameter.default
        if default is inspect.Parameter.empty:
            raise TypeError(f"method factory {name}: argument {parameter.name!r} needs a default (its 'off' value).")
        settings[parameter.name] = Setting(parameter.name, default, type(default),
                                           helps.get(parameter.name, "(undocumented)"))
    return settings


def all_settings() -> dict[str, tuple[Setting, tuple[str, ...]]]:
    """Every setting name of every registered method → (the setting, the methods that take it).

    A name shared by several methods (``remat``) must have one type and default everywhere, so it
    can be one flag."""
    found: dict[str, tuple[Setting, tuple[str, ...]]] = {}
    for name in METHODS:
        for setting in settings_of(name).values():
            if setting.name in found:
                known, owners = found[setting.name]
                if (known.type, known.default) != (setting.type, setting.default):
                    raise TypeError(f"setting {setting.name!r} has different types or defaults in methods "
                                    f"{owners + (name,)}; give it one meaning or rename it.")
                found[setting.name] = (known, owners + (name,))
            else:
                found[setting.name] = (setting, (name,))
    return found


def _factory(name: str) -> Callable[..., Method]:
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; valid methods: {', '.join(METHODS)}.")
    return METHODS[name]


def get_method(name: str, **settings) -> Method:
    """Method ``name`` built with ``settings`` (its factory's arguments; the rest keep their
    defaults); a clear error for an unknown name or setting."""
    known = settings_of(name)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        takes = ", ".join(known) or "no settings"
        raise ValueError(f"method {name!r} has no setting {', '.join(unknown)}; it takes {takes}.")
    return _factory(name)(**settings)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """A method spec, ``"name"`` or ``"name:setting=value[:setting=value…]"`` (e.g.
    ``"bptt:remat=true"``, ``"tbptt:truncation=2:block_size=4"``) → (name, settings), each value
    parsed as its setting's type; one clear line for an unknown name or setting or a bad value."""
    name, *assignments = spec.split(":")
    known = settings_of(name)
    settings: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or key not in known:
            raise ValueError(f"method spec {spec!r}: {assignment!r} is not setting=value for a setting of {name} "
                             f"({', '.join(known) or 'none'}).")
        kind = known[key].type
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                settings[key] = text.lower() in ("true", "1")
            else:
                settings[key] = kind(text)
        except ValueError:
            raise ValueError(f"method spec {spec!r}: {key}={text!r} is not a {kind.__name__}.") from None
    return name, settings


def register(name: str, factory: Callable[..., Method]) -> None:
    """Add a method factory under ``name`` (for methods defined outside safjax; docs/extending.md)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"a method name must be lower-case letters, digits and '_', got {name!r}.")
    METHODS[name] = factory


__all__ = ["METHODS", "Method", "Setting", "StepOutput", "all_settings", "get_method", "parse_spec", "register",
           "settings_of"]
