"""The limits of a code interpreter session: what one call may use, with the defaults documented in the README.

Each limit has a name (the field's) that a call's result carries when that limit stopped it, and a sentence
(`describe`) that the model reads at the end of the call's logs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

LIMIT_NAMES = ("cpu_seconds", "wall_seconds", "memory_mb", "processes", "disk_mb", "files")


@dataclass(frozen=True)
class CodeLimits:
    """What a session's code may use. Times are per call; memory, processes and disk hold for the session."""

    cpu_seconds: int = 30  # CPU time of the session's Python per call (RLIMIT_CPU has 1 s steps)
    wall_seconds: float = 60.0  # time per call, on the host's clock: interrupted, then the session killed
    memory_mb: int = 1024  # address space of each process (RLIMIT_AS); with a memory cgroup, of all together
    processes: int = 64  # processes and threads at once, the session's own Python (two threads) included
    disk_mb: int = 512  # /mnt/data in all (and each file in it), /tmp and /dev/shm each
    files: int = 10_000  # files and folders in /mnt/data
    output_chars: int = 20_000  # characters of logs a call returns; beyond, the middle is cut and says so
    interrupt_grace_seconds: float = 2.0  # after an interrupt, how long the session has to answer before it is killed

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CodeLimits.{field.name} must be a positive number, not {value!r}")
        if self.processes < 8:  # the session needs its Python, two threads and room for a subprocess
            raise ValueError(f"CodeLimits.processes must be at least 8, not {self.processes}")
        if self.memory_mb < 64:  # the interpreter itself needs about 20 MB of address space, its libraries more
            raise ValueError(f"CodeLimits.memory_mb must be at least 64, not {self.memory_mb}")


def phrase(limit: str, limits: CodeLimits) -> str:
    """`limit` (one of LIMIT_NAMES) named with its value: "the memory limit (1024 MB)"."""
    phrases = {
        "cpu_seconds": f"the CPU time limit ({limits.cpu_seconds} s per call)",
        "wall_seconds": f"the time limit ({limits.wall_seconds:g} s per call)",
        "memory_mb": f"the memory limit ({limits.memory_mb} MB)",
        "processes": f"the process limit ({limits.processes} processes and threads)",
        "disk_mb": f"the disk limit ({limits.disk_mb} MB in /mnt/data, and in /tmp)",
        "files": f"the file count limit ({limits.files} files and folders in /mnt/data)",
    }
    return phrases[limit]


def describe(limit: str, limits: CodeLimits) -> str:
    """The sentence naming the limit that stopped a call, for the end of its logs."""
    return f"Execution stopped: the code reached {phrase(limit, limits)}."
