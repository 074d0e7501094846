"""Many writers, rotation and a full disk: nothing interleaves, nothing is lost silently, nothing raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.procs import run_python, wait_for
from support.tmpfs import mounted_tmpfs
from support.records import assert_valid, read_lines

WRITER = """
import sys
from mlops_logging import configure_logging, get_logger
import logging
writer = int(sys.argv[1]); count = int(sys.argv[2])
configure_logging("svc", stdout=False)
slog, plain = get_logger("w"), logging.getLogger("w")
for seq in range(count):
    if seq % 2:
        slog.info("payload line", writer=writer, seq=seq, pad="x" * (seq % 50))
    else:
        plain.info("payload line", extra={"writer": writer, "seq": seq, "pad": "y" * (seq % 50)})
"""


def test_eight_processes_with_rotation_and_an_external_rename_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    log_dir = tmp_path / "svc"
    writers, count = 8, 20_000
    env = {**os.environ, "MLOPS_LOG_DIR": str(log_dir), "MLOPS_LOG_MAX_BYTES": "1MiB", "MLOPS_LOG_BACKUPS": "1000"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(w), str(count)], env=env) for w in range(writers)]
    live = log_dir / "svc.log"
    # logrotate's `create` mode in the middle of the run: rename the live file away while everyone writes.
    wait_for(lambda: live.exists() and live.stat().st_size > 300_000, timeout=60, what="writers to get going")
    os.rename(live, log_dir / "svc.log.logrotate")
    assert [p.wait(timeout=300) for p in procs] == [0] * writers

    files = sorted(p for p in log_dir.iterdir() if p.name.startswith("svc.log"))
    assert len(files) > 10, "size rotation at 1 MiB should have produced many files"
    seen: Counter[tuple[int, int]] = Counter()
    for path in files:
        for line in read_lines(path):
            record = json.loads(line)  # every line is a whole JSON record: no interleaving
            assert_valid(record, where=str(path))
            seen[(record["writer"], record["seq"])] += 1
    assert len(seen) == writers * count, f"missing {writers * count - len(seen)} lines"
    assert set(seen.values()) == {1}, "some lines were written twice"
    assert all(p.stat().st_size < 2 * 1024 * 1024 for p in files if p.name != "svc.log.logrotate")


def test_copytruncate_leaves_no_nul_holes(tmp_path: Path) -> None:
    run_python(f"""
        from mlops_logging import configure_logging, get_logger
        path = configure_logging("svc", log_dir={str(tmp_path)!r}, stdout=False)
        log = get_logger()
        for i in range(1000):
            log.info("before", i=i)
        with open(path, "r+b") as f:
            f.truncate(0)
        log.info("after truncate")
    """)
    data = (tmp_path / "svc.log").read_bytes()
    assert b"\\x00" not in data and b"\x00" not in data
    assert [json.loads(x)["message"] for x in data.splitlines()] == ["after truncate"]


def test_reopen_on_demand_switches_to_the_new_file_at_once(tmp_path: Path) -> None:
    run_python(f"""
        import os
        from mlops_logging import configure_logging, get_logger
        from mlops_logging.config import _open_files
        path = configure_logging("svc", log_dir={str(tmp_path)!r}, stdout=False)
        get_logger().info("old")
        os.rename(path, str(path) + ".old")
        _open_files[path].reopen()              # what gunicorn's USR1 / logrotate's postrotate trigger
        get_logger().info("new")
    """)
    assert [json.loads(x)["message"] for x in read_lines(tmp_path / "svc.log")] == ["new"]
    assert [json.loads(x)["message"] for x in read_lines(tmp_path / "svc.log.old")] == ["old"]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, so the disk really fills (root only)."""
    with mounted_tmpfs(tmp_path / "full", "256k") as mnt:
        yield mnt


def test_disk_full_never_raises_into_the_caller_and_a_later_record_reports_the_loss(small_tmpfs: Path) -> None:
    filler = small_tmpfs / "filler"
    out = run_python(f"""
        import logging, os
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(small_tmpfs)!r}, stdout=False)
        slog, plain = get_logger("app"), logging.getLogger("app")
        fd = os.open({str(filler)!r}, os.O_WRONLY | os.O_CREAT)   # something else eats the disk
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            os.close(fd)
        for i in range(500):
            slog.info("while full", i=i, pad="z" * 100)
            plain.info("while full", extra={{"i": i}})
        os.unlink({str(filler)!r})                     # an operator frees space
        slog.info("space is back")
        print("caller never saw an exception")
    """)
    assert "caller never saw an exception" in out.stdout
    lines = read_lines(small_tmpfs / "svc.log")
    records, torn = [], []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            torn.append(line)
    assert len(torn) <= 1, "at most the one record cut by the full disk may be incomplete"
    report = next(r for r in records if r["logger"] == "mlops_logging")
    assert report["level"] == "WARNING" and report["lost_records"] >= 900 and report["lost_bytes"] > 50_000
    assert "No space left on device" in report["error"] and report["lost_since"] <= report["lost_until"]
    assert records[-1]["message"] == "space is back"
    assert_valid(report)
