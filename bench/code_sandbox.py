"""What a code interpreter session costs: the sandbox check, a session start, a warm call, and the first imports.

    python bench/code_sandbox.py [--repeat N]

Prints the median and the spread of N measurements (default 20) of each step, on the default limits:

* check: `prepare()` once per process (bwrap found, a sandbox started once to see that it works);
* start: a new session's first call of `pass` (cgroups made, bwrap and the kernel started, ready);
* warm call: `x += 1` in a running session (a request, the answer, /mnt/data measured before and after);
* a call that prints 10,000 lines (the logs pipe and their cut to 20,000 characters);
* the first `import numpy, pandas` and `import matplotlib.pyplot` plus a figure, when installed (each session
  imports them once: a new session pays again);
* the end of a session (processes killed, cgroups and folder removed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.server.tools.code_interpreter import CodeSession, SandboxUnavailable, prepare  # noqa: E402


def _timed(function: Callable[[], object]) -> float:
    """Seconds `function` takes."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _line(name: str, seconds: list[float]) -> str:
    """One printed line: the median and the range of `seconds`."""
    median = statistics.median(seconds)
    unit, scale = ("ms", 1e3) if median < 1 else ("s", 1.0)
    spread = f"{min(seconds) * scale:.2f}-{max(seconds) * scale:.2f}"
    return f"{name:<44} {median * scale:8.2f} {unit:<2}  (min-max {spread} {unit}, n={len(seconds)})"


def main() -> int:
    """Measure and print; 1 when no sandbox can start here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="measurements of each step (default 20)")
    repeat = parser.parse_args().repeat
    check = time.perf_counter()
    try:
        sandbox = prepare()
    except SandboxUnavailable as exc:
        print(f"no sandbox here: {exc}")
        return 1
    print(_line("check (once per process)", [time.perf_counter() - check]))
    print(f"sandbox: {sandbox.bwrap}, {sandbox.python}; {sandbox.containment}")
    try:
        import matplotlib  # noqa: F401
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        heavy = True
    except ImportError:
        heavy = False
    root = Path(tempfile.mkdtemp(prefix="runner-code-bench-"))
    starts, warm, printing, numpy_pandas, pyplot, ends = [], [], [], [], [], []
    for n in range(repeat):
        session = CodeSession(root / f"s{n}")
        starts.append(_timed(partial(session.run, "x = 0")))
        for _ in range(10):
            warm.append(_timed(partial(session.run, "x += 1")))
        printing.append(_timed(partial(session.run, "for i in range(10_000): print(i)")))
        if heavy and n < 5:  # seconds each: five say enough
            numpy_pandas.append(_timed(partial(session.run, "import numpy, pandas")))
            pyplot.append(_timed(partial(session.run, "import matplotlib.pyplot as plt; plt.plot([1, 2]); plt.show()")))
        ends.append(_timed(session.close))
    print(_line("start: a new session's first call", starts))
    print(_line("warm call (x += 1)", warm))
    print(_line("a call printing 10,000 lines", printing))
    if heavy:
        print(_line("first import numpy, pandas", numpy_pandas))
        print(_line("first import matplotlib.pyplot + one figure", pyplot))
    else:
        print("numpy, pandas, matplotlib: not installed (pip install -e '.[code]')")
    print(_line("close: processes, cgroups and folder gone", ends))
    root.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
