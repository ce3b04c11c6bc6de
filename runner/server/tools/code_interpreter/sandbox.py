"""Start one code interpreter session process inside bubblewrap, never outside it.

The sandbox (`bwrap`, Debian package `bubblewrap`) gets every namespace of its own (`--unshare-all`: no network but
its own loopback, no host process visible), no capabilities, and a filesystem made of: /usr and the Python that
runs the session (its prefix and site-packages) read-only, a private writable /mnt/data (a host folder per
session), a private /tmp and /dev/shm (tmpfs of the disk limit's size), and a few generated /etc files. Nothing
else of the host exists inside. The environment is cleared but for a few variables.

Processes and memory are limited for the sandbox as a whole with cgroups where this process can make them (root,
or a delegated cgroup v2): pids.max and a memory limit, which the session joins before bwrap starts, so every
process inside is counted. Otherwise with rlimits, which the kernel script sets as hard limits before any code
runs: RLIMIT_NPROC counts the processes of a uid per user namespace, so in the sandbox's own namespace it bounds
the sandbox alone; RLIMIT_AS bounds each process. RLIMIT_NPROC does not apply to root, so as root without a pids
cgroup the sandbox is refused rather than run with processes unlimited.

`prepare` checks all that once per process (a sandbox is started) and raises SandboxUnavailable saying what to
install or change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runner.server.tools.code_interpreter import cgroups
from runner.server.tools.code_interpreter.limits import CodeLimits

KERNEL = Path(__file__).with_name("kernel.py")
KERNEL_INSIDE = "/opt/runner/kernel.py"
DATA_INSIDE = "/mnt/data"
INSTALL_HINT = ("install bubblewrap: `apt-get install bubblewrap` (Debian, Ubuntu), `dnf install bubblewrap` "
                "(Fedora), `pacman -S bubblewrap` (Arch)")
SANDBOX_PROCESSES = 2  # bwrap outside the sandbox and its init inside: in the pids cgroup, not the code's to use
PROBE_SECONDS = 30.0
# join the cgroups given as "$1" files, then become bwrap: its first process is counted from the start
_JOIN_CGROUPS = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n - 1)); done; exec "$@"'
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # symlinks into /usr on merged systems
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/fonts", "/etc/alternatives")  # nothing secret


def block_signals() -> None:
    """Keep process-directed signals (SIGTERM, SIGINT) off a helper thread, for the main thread to handle: a signal
    the main thread holds back (as the transcript writer does between its renames) must not run on another."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


# lives as long as we do; its processes inherit its signal mask, which the kernel clears
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="code-sandbox-spawner", initializer=block_signals)
_probe_lock = threading.Lock()
_prepared: dict[SandboxConfig, Sandbox | SandboxUnavailable] = {}


class SandboxError(RuntimeError):
    """A session could not be started or talked to (the message says why)."""


class SandboxUnavailable(SandboxError):
    """No sandbox can run code on this machine: the message says what to install or change. Code never runs then."""


@dataclass(frozen=True)
class SandboxConfig:
    """Which bwrap and which Python a session uses. The defaults fit a backend run from a virtualenv or a system
    Python: its interpreter, with its site-packages importable (read-only)."""

    bwrap: str = "bwrap"  # a name looked up on PATH, or a path
    python: str | None = None  # the interpreter inside; None: the base interpreter of the running one
    site_dirs: tuple[str, ...] | None = None  # None: the running interpreter's (when `python` is None), else none
    use_cgroups: bool = True  # False: rlimits only (then refused as root, where RLIMIT_NPROC does not apply)


@dataclass(frozen=True)
class Sandbox:
    """A sandbox found to start here, and how it limits processes and memory."""

    bwrap: str
    python: str
    site_dirs: tuple[str, ...]
    binds: tuple[str, ...]  # host folders mounted read-only at the same path
    tmpfs_size: bool  # bwrap >= 0.8 sizes a tmpfs (--size); older ones get host folders the host measures
    pids_cgroup: bool
    memory_cgroup: bool

    @property
    def containment(self) -> str:
        """How processes and memory are limited, in words (for logs and errors)."""
        processes = "a pids cgroup" if self.pids_cgroup else "RLIMIT_NPROC in the sandbox's user namespace"
        memory = "a memory cgroup and RLIMIT_AS" if self.memory_cgroup else "RLIMIT_AS per process"
        return f"processes by {processes}, memory by {memory}"

    def spawn(self, folder: Path, limits: CodeLimits) -> SandboxProcess:
        """Start a session in `folder` (its `data` subfolder is /mnt/data): the kernel script in the sandbox."""
        data = folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        _write_etc(folder / "etc")
        kernel_config = {
            "site_dirs": list(self.site_dirs),
            "memory_bytes": limits.memory_mb << 20,
            "file_bytes": limits.disk_mb << 20,
            "processes": limits.processes,
            # without a user namespace of its own RLIMIT_NPROC counts all our uid's processes: start from those
            "host_processes": 0 if self.pids_cgroup else _tasks_of(os.getuid()),
            "output_chars": limits.output_chars,
        }
        argv = [*self._options(folder, limits), "--", self.python, "-I", "-S", "-B", KERNEL_INSIDE,
                json.dumps(kernel_config)]
        groups = None
        if self.pids_cgroup or self.memory_cgroup:
            tmpfs = 2 * limits.disk_mb if self.tmpfs_size else 0  # /tmp and /dev/shm pages are charged to it
            groups = cgroups.create(
                processes=limits.processes + SANDBOX_PROCESSES if self.pids_cgroup else None,
                memory_bytes=(limits.memory_mb + tmpfs) << 20 if self.memory_cgroup else None)
            if self.pids_cgroup and (groups is None or groups.pids_dir is None):
                if groups is not None:
                    groups.remove()
                raise SandboxError("could not create the session's pids cgroup, which limits its processes")
            assert groups is not None
            files = [str(f) for f in groups.procs_files()]
            argv = ["/bin/sh", "-c", _JOIN_CGROUPS, "sh", str(len(files)), *files, *argv]
        try:
            # from the one spawner thread: --die-with-parent kills the sandbox when the *thread* that started it
            # ends, so a caller's short-lived thread would take its session along
            popen = _SPAWNER.submit(
                subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                close_fds=True, start_new_session=True,  # a Ctrl-C at the server's terminal is the server's alone
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd="/").result()
        except OSError as exc:
            if groups is not None:
                groups.remove()
            raise SandboxError(f"could not start bubblewrap ({self.bwrap}): {exc}") from exc
        return SandboxProcess(popen, groups)

    def _options(self, folder: Path, limits: CodeLimits) -> list[str]:
        """bwrap and its options for a session in `folder`: namespaces, mounts, environment."""
        size = str(limits.disk_mb << 20)
        options = [self.bwrap, "--unshare-all", "--cap-drop", "ALL", "--die-with-parent", "--new-session",
                   "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                options += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                options += ["--ro-bind", path, path]
        for path in _SYSTEM_FILES:
            options += ["--ro-bind-try", path, path]
        for name in ("passwd", "group", "hosts"):
            options += ["--ro-bind", str(folder / "etc" / name), f"/etc/{name}"]
        options += ["--proc", "/proc", "--dev", "/dev"]
        if self.tmpfs_size:
            options += ["--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                        "--size", size, "--tmpfs", "/tmp"]
        else:
            for name, inside in (("shm", "/dev/shm"), ("tmp", "/tmp")):
                (folder / name).mkdir(exist_ok=True)
                options += ["--bind", str(folder / name), inside]
            options += ["--remount-ro", "/dev"]
        # the Python and its libraries after the private /tmp, which would hide a virtualenv made under /tmp
        for path in self.binds:
            options += ["--ro-bind", path, path]
        options += ["--ro-bind", str(KERNEL), KERNEL_INSIDE]
        options += ["--bind", str(folder / "data"), DATA_INSIDE, "--remount-ro", "/", "--chdir", DATA_INSIDE,
                    "--clearenv"]
        for name, value in self._environment().items():
            options += ["--setenv", name, value]
        return options

    def _environment(self) -> dict[str, str]:
        """The variables code sees: nothing of the server's environment (its keys above all)."""
        threads = str(min(4, os.cpu_count() or 1))  # BLAS pools count against the process limit
        return {
            "HOME": "/tmp", "TMPDIR": "/tmp", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONNOUSERSITE": "1", "PYTHONPATH": ":".join(self.site_dirs),  # for a python the code starts itself
            "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
        }

    def probe(self, folder: Path) -> None:
        """Start a sandbox that runs the session's Python once; raise SandboxUnavailable if it does not."""
        (folder / "data").mkdir(parents=True, exist_ok=True)
        _write_etc(folder / "etc")
        argv = [*self._options(folder, CodeLimits()), "--", self.python, "-I", "-S", "-c", "print('ok')"]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=PROBE_SECONDS, env={"PATH": "/usr/bin:/bin"},
                                  cwd="/", start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise SandboxUnavailable(f"bubblewrap ({self.bwrap}) did not start a sandbox within "
                                     f"{PROBE_SECONDS:g} s") from exc
        if done.returncode != 0 or done.stdout.strip() != b"ok":
            message = done.stderr.decode("utf-8", "replace").strip()[-2000:] or f"exit status {done.returncode}"
            hint = ""
            if "namespace" in message or "uid map" in message or "Operation not permitted" in message:
                hint = ("; unprivileged user namespaces may be disabled: allow them (`sysctl -w "
                        "kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04 and later an AppArmor profile for "
                        "bwrap, or `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`)")
            raise SandboxUnavailable(f"bubblewrap ({self.bwrap}) cannot run {self.python} in a sandbox here: "
                                     f"{message}{hint}")


class SandboxProcess:
    """One running sandbox: bwrap and the session's kernel inside, its three pipes, the cgroups it is in."""

    def __init__(self, popen: subprocess.Popen[bytes], groups: cgroups.SessionCgroups | None) -> None:
        """Wrap a started bwrap (see Sandbox.spawn)."""
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        self.popen = popen
        self.cgroups = groups
        self.requests = popen.stdin  # JSON lines to the kernel
        self.answers = popen.stdout.fileno()  # JSON lines from the kernel
        self.logs = popen.stderr.fileno()  # fd 1 and 2 of everything in the sandbox

    @property
    def alive(self) -> bool:
        """Whether bwrap is still running (it ends when the kernel does)."""
        return self.popen.poll() is None

    def pids(self) -> set[int]:
        """The host pids of every process of the sandbox, bwrap's own included."""
        if self.cgroups is not None:
            return self.cgroups.pids()
        return _descendants(self.popen.pid) if self.alive else set()

    def oom_kills(self) -> int:
        """Processes killed for the memory cgroup's limit so far (0 without one)."""
        return 0 if self.cgroups is None else self.cgroups.oom_kills()

    def pid_refusals(self) -> int:
        """Forks refused by the pids cgroup so far (0 without one)."""
        return 0 if self.cgroups is None else self.cgroups.pid_refusals()

    def kill(self) -> int:
        """SIGKILL everything in the sandbox, wait for bwrap, remove the cgroups; bwrap's exit status."""
        if self.cgroups is not None:
            self.cgroups.kill()
        if self.popen.returncode is None:  # not reaped yet, so its pid is still ours to signal
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)  # bwrap; the sandbox's init dies with it (--die-with-parent)
        status = self.wait()
        if self.cgroups is not None:
            self.cgroups.kill()  # a process that forked while bwrap was dying
            self.cgroups.remove()
        return status

    def wait(self) -> int:
        """Wait for bwrap to end and close the pipes; its exit status (128 + n: the kernel died of signal n)."""
        status = self.popen.wait()
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        return status


def prepare(config: SandboxConfig = SandboxConfig()) -> Sandbox:
    """The sandbox for `config`, checked once per process by starting it; SandboxUnavailable (also on later calls)
    when bwrap is missing, cannot start, or processes cannot be limited."""
    with _probe_lock:
        found = _prepared.get(config)
        if found is None:
            try:
                found = _prepare(config)
            except SandboxUnavailable as exc:
                found = exc
            _prepared[config] = found
    if isinstance(found, SandboxUnavailable):
        raise found
    return found


def _prepare(config: SandboxConfig) -> Sandbox:
    """Find bwrap and the Python, choose how to limit processes and memory, and start a sandbox once."""
    import tempfile

    bwrap = shutil.which(config.bwrap)
    if bwrap is None:
        raise SandboxUnavailable(f"code_interpreter needs a sandbox and bubblewrap ({config.bwrap}) is not "
                                 f"installed: {INSTALL_HINT}; code is never run unsandboxed")
    bwrap = os.path.realpath(bwrap)
    try:
        help_text = subprocess.run([bwrap, "--help"], capture_output=True, timeout=PROBE_SECONDS).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bubblewrap ({bwrap}) does not run: {exc}; {INSTALL_HINT}") from exc
    python = os.path.realpath(config.python or getattr(sys, "_base_executable", "") or sys.executable)
    if config.site_dirs is not None:
        site_dirs = tuple(os.path.realpath(d) for d in config.site_dirs)
    elif config.python is None:
        site_dirs = tuple(dict.fromkeys(os.path.realpath(d) for d in site.getsitepackages() if os.path.isdir(d)))
    else:
        site_dirs = ()
    usable = cgroups.usable() if config.use_cgroups else {"pids": False, "memory": False}
    if not usable["pids"] and os.getuid() == 0:
        raise SandboxUnavailable(
            "code_interpreter cannot limit the processes of its sandbox: this server runs as root, for which "
            "RLIMIT_NPROC does not count, and it cannot make a pids cgroup (cgroup v1's pids hierarchy, or a "
            "cgroup v2 that delegates pids to its children); run it as an unprivileged user, or give it a "
            "writable pids cgroup. Code is never run with processes unlimited")
    sandbox = Sandbox(bwrap=bwrap, python=python, site_dirs=site_dirs,
                      binds=_binds([str(Path(python).parent.parent), *site_dirs, python]),
                      tmpfs_size=b"--size" in help_text, pids_cgroup=usable["pids"], memory_cgroup=usable["memory"])
    with tempfile.TemporaryDirectory(prefix="runner-code-probe-") as folder:
        sandbox.probe(Path(folder))
    return sandbox


def _binds(paths: list[str]) -> tuple[str, ...]:
    """The folders to mount read-only, each once: none under /usr (mounted whole) or under another one."""
    kept: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.exists(p)}, key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in ["/usr", *kept]):
            kept.append(path)
    return tuple(kept)


def _write_etc(folder: Path) -> None:
    """The /etc files code may look for (its user's name, localhost), made up: the host's are not shown."""
    folder.mkdir(parents=True, exist_ok=True)
    uid, gid = os.getuid(), os.getgid()  # the sandbox keeps our uid (root stays 0 in its user namespace)
    name = "root" if uid == 0 else "sandbox"
    files = {
        "passwd": f"{name}:x:{uid}:{gid}:{name}:/tmp:/bin/sh\n" + ("" if uid == 0 else "root:x:0:0:root:/:/bin/sh\n"),
        "group": f"{name}:x:{gid}:\n" + ("" if gid == 0 else "root:x:0:\n"),
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    }
    for file_name, text in files.items():
        (folder / file_name).write_text(text)


def _descendants(pid: int) -> set[int]:
    """`pid` and every process descending from it, by /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def _tasks_of(uid: int) -> int:
    """How many processes and threads `uid` runs (what RLIMIT_NPROC counts outside a user namespace)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("Uid", "").split()[:1] == [str(uid)]:
                count += int(fields.get("Threads", "1").strip() or 1)
    return count
