"""The code interpreter's sandboxed sessions (runner.server.tools.code_interpreter): state kept between calls, and
hostile code contained, each limit named in the output, with the next call working and nothing left running.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.server.tools.code_interpreter import cgroups, files
from runner.server.tools.code_interpreter.limits import CodeLimits


def test_limits_are_checked() -> None:
    assert CodeLimits() == CodeLimits(cpu_seconds=30, wall_seconds=60, memory_mb=1024, processes=64, disk_mb=512,
                                      files=10_000, output_chars=20_000)
    for bad in ({"cpu_seconds": 0}, {"memory_mb": -1}, {"processes": 2}, {"wall_seconds": True}):
        with pytest.raises(ValueError):
            CodeLimits(**bad)  # type: ignore[arg-type]


def test_cgroup_hierarchies_are_found_for_v1_and_v2(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    unified = tmp_path / "unified"
    (proc / "mountinfo").write_text(
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        f"41 31 0:38 / {unified} rw - cgroup2 cgroup2 rw\n")
    (proc / "cgroup").write_text("4:memory:/service/a\n0::/user.slice/me\n")
    (unified / "user.slice" / "me").mkdir(parents=True)
    (unified / "user.slice" / "me" / "cgroup.controllers").write_text("cpu pids memory\n")
    found = {name: (h.own, h.version) for name, h in cgroups.hierarchies(proc).items()}
    # memory from v1 where it is mounted, pids from v2 (which offers memory too, but one hierarchy has it)
    assert found == {"memory": (Path("/sys/fs/cgroup/memory/service/a"), 1), "pids": (unified / "user.slice/me", 2)}


def test_scan_counts_without_following_symlinks(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_bytes(b"12345")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"x" * 1000)
    (tmp_path / "link").symlink_to(outside)
    usage = files.scan(tmp_path, 100)
    assert usage.files == {"sub/a.txt": (5, (tmp_path / "sub" / "a.txt").stat().st_mtime_ns)}
    assert usage.bytes == 5 and usage.entries == 3 and usage.others == {"sub", "link"}
    assert usage.over(4, 100) == "disk_mb" and usage.over(5, 2) == "files" and usage.over(5, 3) is None
    shutil.rmtree(outside)


def test_paths_outside_mnt_data_are_refused() -> None:
    assert files.relative("/mnt/data/a/b.csv") == "a/b.csv" and files.relative("b.csv") == "b.csv"
    for bad in ("/etc/passwd", "../x", "a/../../x", "/mnt/data/", "a//b", "a\0b"):
        with pytest.raises(ValueError):
            files.relative(bad)
