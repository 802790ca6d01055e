"""What every command-line entry point shares: absl flags, the `--config` flag, one-line errors.

Every CLI takes `--config` (a config file) with `--config.a.b=value` overrides, as `train.py` does
(ml_collections' config_flags), and flags spelled with underscores. A mistake on the command line or
in the inputs prints one line `error: ...` and exits with status 2 (never a traceback).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from absl import app, flags

from thflax.errors import InputError

#: The schema every config extends (configs/default.py), as a path that works from any folder.
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "default.py")


def define_config(default: str | None = DEFAULT_CONFIG, help_text: str = "Config file.") -> None:
    """`--config` (a config file, default the schema) with `--config.x.y=value` overrides."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)


def fail(message: str) -> None:
    """Prints one line and exits with status 2."""
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr)
    sys.exit(2)


def _config_error(e: BaseException) -> str:
    """One line for an error raised while loading or overriding a config."""
    text = " ".join(str(e).split())
    unknown = re.search(r"Did you mean \"([\w.]+)\" instead of \"([\w.]+)\"", text)
    if unknown:  # ConfigDict's KeyError, escaped several times over by config_flags
        return f"unknown config key {unknown.group(2)!r} (did you mean {unknown.group(1)!r}?)"
    if isinstance(e, OSError) and "No such file" in text:
        return f"config file not found: {flags.FLAGS['config'].config_filename}"
    return text if text.startswith("--config") else f"--config: {text}"


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        fail(_config_error(e.__cause__ or e))
    except Exception as e:  # noqa: BLE001 - anything a config file or an override raises: one line
        fail(_config_error(e))
    if "config" in flags.FLAGS:
        try:  # config_flags defers a failed load to the first use: fail here instead
            flags.FLAGS.config.keys()
        except Exception as e:  # noqa: BLE001
            fail(_config_error(e.__cause__ or e))
    return rest


def run(main: Callable[[list[str]], int | None]) -> None:
    """absl's app.run, with flag mistakes and InputErrors as one line and exit status 2."""

    def guarded(argv):
        try:
            return main(argv)
        except InputError as e:
            fail(e)

    app.run(guarded, flags_parser=_parse_flags)


def config_given() -> bool:
    """Whether `--config` or any `--config.x=y` override was on the command line."""
    return bool(flags.FLAGS["config"].present) or bool(overrides())


def overrides() -> dict:
    """The `--config.x.y=value` overrides given on the command line, by dotted path."""
    from ml_collections import config_flags

    return dict(config_flags.get_override_values(flags.FLAGS["config"]))


def checkpoint_config(path: str):
    """The config for a trained workdir/export: the `--config` file if given, else the saved one,
    with the command line's `--config.x=y` overrides applied either way."""
    from thflax import params

    if flags.FLAGS["config"].present:
        return flags.FLAGS.config
    return apply_overrides(params.load_config(path))


def apply_overrides(config):
    """`config` with the command line's `--config.x.y=value` overrides set (in place)."""
    for key, value in overrides().items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config
