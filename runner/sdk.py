"""The official `openai` SDK, loaded for what a run needs and no more.

Importing `openai` runs the `__init__` of every package it touches, and those of `openai.types` and
`openai.resources` re-export every type and resource the SDK has: about a second of CPU here, building
pydantic models the runner never uses (Evals, Realtime, Agents...). Those `__init__` files only
re-export names from their submodules, so `install_lazy_imports()` makes them lazy: a package's
submodules load when imported or when one of its names is first used, exactly as written in its
`__init__`. A package whose `__init__` does anything else loads as usual.

`RUNNER_EAGER_SDK=1` turns this off (to rule it out when something looks wrong).
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncOpenAI

LAZY_PREFIXES = ("openai.types", "openai.resources")


def install_lazy_imports() -> None:
    """Make the SDK's re-exporting package `__init__`s lazy (once per process; no-op when disabled)."""
    if os.environ.get("RUNNER_EAGER_SDK") or any(isinstance(f, _LazyPackageFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _LazyPackageFinder())


def async_client(client_class: type[AsyncOpenAI] | None = None, **kwargs: Any) -> AsyncOpenAI:
    """An AsyncOpenAI client (or one of `client_class`) whose platform is known up front: the SDK would
    otherwise work it out on its first request with `platform.platform()`, which runs `uname -p` in a
    subprocess from a thread."""
    import platform

    from openai import AsyncOpenAI

    client = (client_class or AsyncOpenAI)(**kwargs)
    if getattr(client, "_platform", "absent") is None:  # only where the SDK keeps it there (openai 3.x)
        client._platform = _platform_name(platform.system())  # type: ignore[assignment]
    return client


def _platform_name(system: str) -> str:
    # the names the SDK's own get_platform() gives (it tells iOS and Android apart too; a CLI runs on neither)
    return {"darwin": "MacOS", "windows": "Windows", "linux": "Linux", "freebsd": "FreeBSD",
            "openbsd": "OpenBSD"}.get(system.lower(), f"Other:{system.lower()}" if system else "Unknown")


def assistants(client: AsyncOpenAI) -> Any:
    """`client.beta.assistants`, without importing every other beta resource (`client.beta` imports all)."""
    from openai.resources.beta.assistants import AsyncAssistants

    return AsyncAssistants(client)


def threads(client: AsyncOpenAI) -> Any:
    """`client.beta.threads` (with its runs and messages), without the rest of `client.beta`."""
    from openai.resources.beta.threads.threads import AsyncThreads

    return AsyncThreads(client)


class _LazyPackageFinder(importlib.abc.MetaPathFinder):
    """Finds the SDK's packages as usual and, where their `__init__` only re-exports, loads them lazily."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        """The normal spec of a lazy-able package, with a lazy loader; None for everything else."""
        if not fullname.startswith(LAZY_PREFIXES):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not spec.submodule_search_locations or not spec.origin or spec.loader is None:
            return None
        exports = _re_exports(spec.origin)
        if exports is None:
            return None
        spec.loader = _LazyPackageLoader(spec.loader, exports)
        return spec


def _re_exports(init_file: str) -> tuple[dict[str, tuple[str | None, str]], list[str] | None] | None:
    """Where each name of a package `__init__` comes from ({name: (submodule, name there)}) and its
    `__all__`; None when the file does anything but relative imports, `__all__`, `from __future__` and a
    docstring."""
    try:
        with open(init_file, "rb") as handle:
            tree = ast.parse(handle.read(), init_file)
    except (OSError, SyntaxError, ValueError):
        return None
    table: dict[str, tuple[str | None, str]] = {}
    names: list[str] | None = None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and all(a.name != "*" for a in node.names):
            for alias in node.names:
                table[alias.asname or alias.name] = (node.module, alias.name)
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id == "__all__"):
            try:
                names = list(ast.literal_eval(node.value))
            except ValueError:
                return None
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:  # a compiler directive, which also binds its name (`annotations`)
                table[alias.asname or alias.name] = ("__future__", alias.name)
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            return None  # absolute imports, code: load it as written
    return table, names


class _LazyPackageLoader(importlib.abc.Loader):
    """Executes nothing at import: the package's names resolve on first use (PEP 562 `__getattr__`)."""

    def __init__(self, real: importlib.abc.Loader, exports: tuple[dict[str, tuple[str | None, str]],
                                                                     list[str] | None]) -> None:
        self.real = real
        self.table, self.all = exports

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        """The default module object."""
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Give the module its `__getattr__` and `__dir__` instead of running its `__init__`."""
        table, package = self.table, module.__name__

        def __getattr__(name: str) -> Any:
            if name in table:
                submodule, original = table[name]
                if submodule is None:  # `from . import x`
                    value: Any = importlib.import_module(f"{package}.{original}")
                elif submodule == "__future__":
                    value = getattr(importlib.import_module("__future__"), original)
                else:
                    value = getattr(importlib.import_module(f"{package}.{submodule}"), original)
            elif not name.startswith("__"):
                try:  # a submodule the `__init__` does not import (`from openai.types import beta`)
                    value = importlib.import_module(f"{package}.{name}")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{package}.{name}":
                        raise
                    raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
            else:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            setattr(module, name, value)
            return value

        def __dir__() -> list[str]:
            return sorted(set(module.__dict__) | set(table))

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        module.__dir__ = __dir__  # type: ignore[method-assign]
        if self.all is not None:
            module.__dict__["__all__"] = self.all
