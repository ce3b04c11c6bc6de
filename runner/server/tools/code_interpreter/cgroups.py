"""Per-session control groups: a pids and a memory limit over every process of a sandbox, where this process may
make them.

A cgroup limits a session as a whole, which rlimits cannot do for root (RLIMIT_NPROC does not apply to uid 0) and
do only per process for memory (RLIMIT_AS). Each session gets a child of the cgroup this process is in, so the
limits nest under whatever already limits us (a service, a container). Both layouts are handled: cgroup v1, one
hierarchy per controller (`/sys/fs/cgroup/pids/...`, `/sys/fs/cgroup/memory/...`), and cgroup v2, one hierarchy
where our own cgroup must already delegate `pids` and `memory` to its children (`cgroup.subtree_control`). When
neither works (the usual case for an unprivileged user, whose cgroups belong to systemd), `create` leaves that
controller out and the sandbox falls back to rlimits.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "runner-code-"  # then the creating process's pid, so a dead creator's leftovers can be told apart
CONTROLLERS = ("pids", "memory")
STALE_SECONDS = 60  # a leftover is that old at least: never one a creator in another pid namespace is setting up
_counter = itertools.count(1)
_probe_lock = threading.Lock()
_probed: dict[str, bool] | None = None


@dataclass(frozen=True)
class Hierarchy:
    """Where a controller lives: the cgroup this process is in, as a folder, and the hierarchy's version."""

    own: Path
    version: int


def hierarchies(proc_self: Path = Path("/proc/self")) -> dict[str, Hierarchy]:
    """The pids and memory controllers this process could make child cgroups under, by controller name.

    Reads /proc/self/mountinfo for the mounted hierarchies and /proc/self/cgroup for our place in each. A v2
    controller counts when our own cgroup offers it (`cgroup.controllers`); whether our children get it is up to
    our `cgroup.subtree_control`, which `create` finds out and never changes.
    """
    try:
        mountinfo = (proc_self / "mountinfo").read_text()
        membership = (proc_self / "cgroup").read_text()
    except OSError:
        return {}
    v1: dict[str, tuple[Path, str]] = {}
    v2: tuple[Path, str] | None = None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        parts, tail = left.split(), right.split()
        if len(parts) < 5 or len(tail) < 3:
            continue
        root, mountpoint, fstype, options = parts[3], Path(parts[4]), tail[0], tail[2].split(",")
        if fstype == "cgroup":
            for name in CONTROLLERS:
                if name in options:
                    v1.setdefault(name, (mountpoint, root))
        elif fstype == "cgroup2" and v2 is None:
            v2 = (mountpoint, root)
    found: dict[str, Hierarchy] = {}
    for line in membership.splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if number == "0" and names == "" and v2 is not None:
            own = _inside(*v2, path)
            try:
                offered = (own / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            for name in CONTROLLERS:
                if name in offered and name not in v1:
                    found.setdefault(name, Hierarchy(own, 2))
        else:
            for name in names.split(","):
                if name in v1:
                    found[name] = Hierarchy(_inside(*v1[name], path), 1)
    return found


def _inside(mountpoint: Path, mount_root: str, path: str) -> Path:
    """Our cgroup `path` (from /proc/self/cgroup) as a folder under a mount of the hierarchy at `mount_root`."""
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root.rstrip("/") + "/")):
        path = path[len(mount_root):]
    return mountpoint / path.lstrip("/")


@dataclass
class SessionCgroups:
    """The cgroups one session's processes run in (one per v1 controller, or one v2 folder for both)."""

    pids_dir: Path | None
    memory_dir: Path | None
    versions: dict[Path, int] = field(default_factory=dict)

    @property
    def dirs(self) -> list[Path]:
        """Each folder once (a v2 cgroup holds both controllers)."""
        return list(dict.fromkeys(d for d in (self.pids_dir, self.memory_dir) if d is not None))

    def procs_files(self) -> list[Path]:
        """The files a process writes its pid to, to join the session's cgroups (its children follow)."""
        return [d / "cgroup.procs" for d in self.dirs]

    def pids(self) -> set[int]:
        """The host pids of every process in the session's cgroups."""
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(pid) for pid in (d / "cgroup.procs").read_text().split())
        return found

    def oom_kills(self) -> int:
        """How many processes the kernel has killed for the memory limit (a counter: compare before and after)."""
        if self.memory_dir is None:
            return 0
        name = "memory.events" if self.versions.get(self.memory_dir) == 2 else "memory.oom_control"
        return _counter_in(self.memory_dir / name, "oom_kill")

    def pid_refusals(self) -> int:
        """How many forks the pids limit has refused (a counter: compare before and after)."""
        return 0 if self.pids_dir is None else _counter_in(self.pids_dir / "pids.events", "max")

    def kill(self) -> None:
        """SIGKILL every process in the cgroups until none is left (forks racing the kill are bounded by pids.max)."""
        for d in self.dirs:
            if self.versions.get(d) == 2:
                with contextlib.suppress(OSError):
                    (d / "cgroup.kill").write_text("1")
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self, wait_seconds: float = 5.0) -> None:
        """Remove the cgroups once their processes are gone (a killed process leaves them a moment later)."""
        deadline = time.monotonic() + wait_seconds
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break  # left behind empty-to-be; the next session's cleanup removes it
                    time.sleep(0.02)


def _counter_in(path: Path, key: str) -> int:
    """The value of `key` in a cgroup file of `key value` lines, 0 when unreadable."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    return 0


def create(*, processes: int | None, memory_bytes: int | None,
           found: dict[str, Hierarchy] | None = None) -> SessionCgroups | None:
    """Make the cgroups of a new session, with `processes` as pids.max and `memory_bytes` as the memory limit
    (None: that controller is not wanted). A controller this process cannot use is left out; None when no
    controller could be set up."""
    found = hierarchies() if found is None else found
    name = f"{PREFIX}{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
    made: dict[str, Path] = {}
    versions: dict[Path, int] = {}
    for controller, wanted in (("pids", processes), ("memory", memory_bytes)):
        hierarchy = found.get(controller)
        if wanted is None or hierarchy is None:
            continue
        folder = hierarchy.own / name
        if folder not in versions:
            if not _make(folder, hierarchy):
                continue
            versions[folder] = hierarchy.version
        if _limit(folder, controller, wanted, hierarchy.version):
            made[controller] = folder
    for folder in set(versions) - set(made.values()):
        with contextlib.suppress(OSError):
            folder.rmdir()
    if not made:
        return None
    return SessionCgroups(made.get("pids"), made.get("memory"), {d: versions[d] for d in set(made.values())})


def _make(folder: Path, hierarchy: Hierarchy) -> bool:
    """Create one session cgroup under our own (clearing dead creators' leftovers first); False when we may not."""
    _remove_stale(hierarchy.own)
    try:
        folder.mkdir()
    except OSError:
        return False
    return True


def _limit(folder: Path, controller: str, value: int, version: int) -> bool:
    """Set the limit of `controller` on a session cgroup; False when that controller cannot be used there."""
    if version == 2 and not (folder / f"{controller}.max").exists():
        return False  # our cgroup does not delegate it to its children; changing that is its owner's business
    target = "pids.max" if controller == "pids" else "memory.max" if version == 2 else "memory.limit_in_bytes"
    try:
        (folder / target).write_text(str(value))
    except OSError:
        return False
    if controller == "memory":  # no swapping past the limit either, where swap is accounted
        swap = "memory.swap.max" if version == 2 else "memory.memsw.limit_in_bytes"
        with contextlib.suppress(OSError):
            (folder / swap).write_text("0" if version == 2 else str(value))
    return True


def _remove_stale(parent: Path) -> None:
    """Remove empty session cgroups whose creating process is gone (it crashed before removing them)."""
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            creator = entry.name[len(PREFIX):].split("-", 1)[0] if entry.name.startswith(PREFIX) else ""
            if creator.isdigit() and not Path(f"/proc/{creator}").exists():
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < time.time() - STALE_SECONDS:
                        entry.rmdir()  # refused while a process is still in it: then it is not stale


def usable() -> dict[str, bool]:
    """Which of pids and memory this process can limit with a cgroup, found once (a cgroup made and removed)."""
    global _probed
    with _probe_lock:
        if _probed is None:
            probe = create(processes=1024, memory_bytes=1 << 40)
            _probed = {"pids": probe is not None and probe.pids_dir is not None,
                       "memory": probe is not None and probe.memory_dir is not None}
            if probe is not None:
                probe.remove()
        return dict(_probed)
