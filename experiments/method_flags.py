"""Every method factory's settings as absl flags, one per setting name (`safjax.methods.all_settings`),
for the binaries that take them (`experiments.train`, `experiments.benchmark`)."""

from __future__ import annotations

from absl import flags

from safjax import methods

# An absl flag definer per Python type (of a default value).
DEFINE_BY_TYPE = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_string}


def define(help_suffix: str = "") -> dict[str, tuple[methods.Setting, tuple[str, ...]]]:
    """Define a flag per setting name (its type and default; help: the methods that take it, the
    line under ``Args:`` in the factory's docstring, then ``help_suffix``); returns
    `methods.all_settings()`."""
    settings = methods.all_settings()
    for name, (setting, owners) in settings.items():
        DEFINE_BY_TYPE[setting.type](name, setting.default, f"{', '.join(owners)}: {setting.help}{help_suffix}")
    return settings


def given(settings) -> dict:
    """``{setting: value}`` of the settings among ``settings`` given on the command line."""
    return {name: flags.FLAGS[name].value for name in settings if flags.FLAGS[name].present}
