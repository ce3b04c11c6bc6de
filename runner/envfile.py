"""Environment files (`.env`): provider settings and keys kept out of the shell, loaded with python-dotenv.

Variables already set in the environment win over the file, as with every dotenv tool. The values loaded
count as secrets: they are written as `<NAME>` in everything the runner writes (see runner.redact). Values
shorter than `SECRET_MIN_LENGTH` are loaded but not scrubbed: replacing every `1` or `true` would corrupt what
is written, and a key is never that short.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.redact import MIN_SECRET_LENGTH as SECRET_MIN_LENGTH

DEFAULT_ENV_FILE = ".env"


class EnvFileError(Exception):
    """An environment file that cannot be read."""


@dataclass(frozen=True)
class LoadedEnv:
    """What an environment file set: its path, the variables it set, and those that count as secrets."""

    path: Path | None = None
    names: tuple[str, ...] = ()
    secret_names: tuple[str, ...] = field(default=())


def load_env_file(path: str | Path | None, *, use_default: bool = True,
                  environ: MutableMapping[str, str] | None = None) -> LoadedEnv:
    """Load `path` (or `.env` in the working folder when present and `use_default`) into `environ`, without
    overriding what is set already."""
    from dotenv import dotenv_values

    target = os.environ if environ is None else environ
    if path is None:
        default = Path(DEFAULT_ENV_FILE)
        if not use_default or not default.is_file():
            return LoadedEnv()
        path = default
    file = Path(path)
    if not file.is_file():
        raise EnvFileError(f"{file}: not a file")
    try:
        values = dotenv_values(file, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvFileError(f"{file}: cannot be read: {exc}") from None
    names = []
    for name, value in values.items():
        if value is None or name in target:  # `NAME` alone declares nothing; the environment wins
            continue
        target[name] = value
        names.append(name)
    secrets = tuple(n for n in names if len(target[n].strip()) >= SECRET_MIN_LENGTH)
    return LoadedEnv(file, tuple(names), secrets)
