"""The SDK loaded lazily (runner.sdk): only what a run needs, with the same names as the eager SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runner.sdk import _platform_name, async_client

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "specs" / "examples" / "hello.yaml"

# every name each of the SDK's packages offers once all are loaded, {package: {name: what it is}}
_ALL_NAMES = """
import importlib, json, pkgutil, sys
{install}
import openai
for root in ("openai.types", "openai.resources"):
    package = importlib.import_module(root)
    for info in pkgutil.walk_packages(package.__path__, root + "."):
        if info.ispkg:
            importlib.import_module(info.name)
asked = json.load(sys.stdin)
def what(value):
    return f"{{type(value).__name__}} {{getattr(value, '__module__', '')}}.{{getattr(value, '__qualname__', '')}}"
names = {{}}
for name, module in sorted(sys.modules.items()):
    if name.startswith(("openai.types", "openai.resources")) and hasattr(module, "__path__"):
        wanted = asked.get(name) or [n for n in dir(module) if not n.startswith("__")]
        names[name] = {{n: what(getattr(module, n)) for n in wanted}}
print(json.dumps(names))
"""


def _python(code: str, stdin: str = "{}") -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT, input=stdin).stdout


def test_a_run_on_the_embedded_backend_loads_none_of_the_sdk_it_does_not_use() -> None:
    loaded = json.loads(_python(f"""
import json, sys
from runner.cli import main
sys.argv = ["runner", "run", {str(HELLO)!r}, "--out", "/dev/null/none", "--quiet"]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr if False else sys.stdout)
""").splitlines()[-1])
    assert "openai.resources.beta.threads.threads" in loaded  # the run went through the SDK's resources
    unused = [m for m in loaded if m.startswith(("openai.types.evals", "openai.types.graders",
                                                 "openai.resources.beta.realtime", "openai.resources.beta.agents",
                                                 "openai.types.beta.realtime", "openai.resources.audio"))]
    assert unused == []


def test_the_lazy_packages_offer_exactly_the_names_of_the_eager_ones() -> None:
    eager = json.loads(_python(_ALL_NAMES.format(install="")))
    # every name the eager packages have resolves, lazily, to the same object (by kind, module and name)
    lazy = json.loads(_python(_ALL_NAMES.format(
        install="from runner.sdk import install_lazy_imports; install_lazy_imports()"),
        stdin=json.dumps({package: sorted(names) for package, names in eager.items()})))
    assert lazy.keys() == eager.keys() and len(eager) > 50
    differ = {package: {n: (eager[package][n], lazy[package][n]) for n in eager[package]
                        if lazy[package][n] != eager[package][n]}
              for package in eager if lazy[package] != eager[package]}
    assert differ == {}


def test_the_lazy_loader_can_be_turned_off() -> None:
    out = _python("""
import os, sys
os.environ["RUNNER_EAGER_SDK"] = "1"
from runner.sdk import install_lazy_imports
install_lazy_imports()
import openai.types.beta.assistant
print("openai.types.graders" in sys.modules)
""")
    assert out.strip() == "True"


def test_a_run_starts_no_process_to_learn_the_platform() -> None:
    # the SDK's platform.platform() runs `uname -p` in a subprocess on a client's first request
    out = _python(f"""
import subprocess, sys
started = []
real = subprocess.Popen.__init__
def spy(self, args, *a, **k):
    started.append(args)
    real(self, args, *a, **k)
subprocess.Popen.__init__ = spy
from runner.cli import main
sys.argv = ["runner", "run", {str(HELLO)!r}, "--out", "/dev/null/none", "--quiet"]
try:
    main()
except SystemExit:
    pass
print("STARTED", started)
""")
    assert out.strip().splitlines()[-1] == "STARTED []"


def test_the_client_knows_its_platform_before_its_first_request() -> None:
    client = async_client(api_key="unused", base_url="http://127.0.0.1:9/v1")
    assert client._platform in ("Linux", "MacOS", "Windows") or str(client._platform).startswith("Other:")
    assert _platform_name("Linux") == "Linux" and _platform_name("Darwin") == "MacOS"
    assert _platform_name("") == "Unknown"
