"""Many writers, rotation and a full disk: nothing interleaves, nothing is lost silently, nothing raises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_logging._render import render_json
from mlops_logging.testing import assert_valid, read_records
from support.procs import run_python, wait_for
from support.records import read_lines
from support.tmpfs import mounted_tmpfs

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
        from mlops_logging._config import _open_files
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


# --- reconfiguring while threads log ------------------------------------------------------------------------------

RECONFIGURE_WHILE_LOGGING = """
import json, os, sys, threading
sys.setswitchinterval(1e-5)  # switch threads very often: writers get caught between reading the fd and writing
from mlops_logging import configure_logging, get_logger
root, rounds = sys.argv[1], int(sys.argv[2])
configure_logging("svc", log_dir=f"{root}/logs/0", stdout=False)
log = get_logger("w")
stop = threading.Event()
counts = [0] * 4

def writer(n):
    seq = 0
    while not stop.is_set():
        log.info("record", w=n, seq=seq)
        seq += 1
    counts[n] = seq

threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
for t in threads:
    t.start()
for i in range(1, rounds + 1):
    configure_logging("svc", log_dir=f"{root}/logs/{i}", stdout=False)
    # The application's own file, opened right after the reconfiguration: it gets the lowest free descriptor.
    fd = os.open(f"{root}/checkpoints/{i}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"C" * 64)
    os.close(fd)
stop.set()
for t in threads:
    t.join()
print(json.dumps(counts))
"""


def test_reconfiguring_while_four_threads_log_never_writes_a_record_into_another_file(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    proc = subprocess.run([sys.executable, "-c", RECONFIGURE_WHILE_LOGGING, str(tmp_path), "200"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout.splitlines()[-1])
    checkpoints = sorted((tmp_path / "checkpoints").iterdir())
    assert len(checkpoints) == 200
    spoiled = [p.name for p in checkpoints if p.read_bytes() != b"C" * 64]
    assert not spoiled, f"log records landed in the application's files {spoiled[:5]}"
    seen: Counter[tuple[int, int]] = Counter()
    counted_lost = 0
    for path in (tmp_path / "logs").rglob("*.log*"):
        for record in read_records(path):
            if record["logger"] == "mlops_logging":
                counted_lost += record.get("lost_records", 0)
            else:
                seen[(record["w"], record["seq"])] += 1
    expected = {(w, seq) for w, count in enumerate(counts) for seq in range(count)}
    assert set(seen) <= expected and set(seen.values()) <= {1}
    missing = len(expected) - len(seen)
    assert missing == counted_lost == 0, f"{missing} records missing, {counted_lost} reported lost"
    assert proc.stderr == ""


# --- a deleted log file or directory -------------------------------------------------------------------------------


def test_records_written_to_a_deleted_log_file_are_written_again_into_the_new_one(tmp_path: Path) -> None:
    out = run_python(f"""
        import os, time
        from mlops_logging import configure_logging, get_logger
        path = configure_logging("svc", log_dir={str(tmp_path)!r}, stdout=False)
        log = get_logger("app")
        os.unlink(path)                      # deleted by hand (or a cleanup job) while the service runs
        for i in range(1000):
            log.info("after the delete", i=i)
        time.sleep(1.1)                      # the next write notices: the path no longer names the open file
        log.info("noticed")
    """)
    records = read_records(tmp_path / "svc.log")
    assert [r["i"] for r in records[:-1]] == list(range(1000)) and records[-1]["message"] == "noticed"
    assert out.stderr == ""


def test_records_written_while_the_log_directory_was_removed_are_not_lost(tmp_path: Path) -> None:
    run_python(f"""
        import shutil, time
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(tmp_path / "svc")!r}, stdout=False)
        log = get_logger("app")
        shutil.rmtree({str(tmp_path / "svc")!r})   # `rm -rf logs/`
        for i in range(500):
            log.info("after rm -rf", i=i)
        time.sleep(1.1)
        log.info("noticed")
    """)
    records = read_records(tmp_path / "svc" / "svc.log")
    assert [r["i"] for r in records[:-1]] == list(range(500)) and records[-1]["message"] == "noticed"


def test_more_than_a_second_of_records_after_a_delete_are_not_lost_either(tmp_path: Path) -> None:
    # About 3 MiB before the check interval is over: the path is checked again every KEEP_BYTES (1 MiB) written,
    # so what the deleted file swallowed always fits in memory.
    run_python(f"""
        import os
        from mlops_logging import configure_logging, get_logger
        path = configure_logging("svc", log_dir={str(tmp_path)!r}, stdout=False)
        log = get_logger("app")
        os.unlink(path)
        for i in range(3000):
            log.info("after the delete", i=i, pad="x" * 1000)
    """)
    assert [r["i"] for r in read_records(tmp_path / "svc.log")] == list(range(3000))


def test_when_the_new_file_refuses_what_a_deleted_file_swallowed_the_loss_is_counted(tmp_path: Path) -> None:
    out = run_python(f"""
        import errno, os, time
        from mlops_logging import configure_logging, get_logger, _files as files
        plan = []
        def write(fd, data):
            if plan:
                plan.pop(0)
                raise OSError(errno.ENOSPC, "No space left on device")
            return os.write(fd, data)
        files.LogFile._write = staticmethod(write)
        path = configure_logging("svc", log_dir={str(tmp_path)!r}, stdout=False)
        log = get_logger("app")
        os.unlink(path)
        for i in range(10):
            log.info("swallowed", i=i)
        time.sleep(1.1)
        plan.append("full")                  # writing the 10 records again into the new file is refused
        log.info("noticed")
        print(os.getpid())
    """)
    pid = int(out.stdout.split()[-1])
    records = read_records(tmp_path / "svc.log")
    assert [r["message"] for r in records][1:] == ["noticed"]
    warning = records[0]
    assert warning["level"] == "WARNING" and warning["logger"] == "mlops_logging"
    assert "was deleted while open" in warning["message"] and "No space left on device" in warning["error"]
    size = sum(len(render_json({"timestamp": "2026-01-01T00:00:00.000Z", "level": "INFO", "message": "swallowed",
                                "service": "svc", "logger": "app", "pid": pid, "i": i})) for i in range(10))
    assert (warning["lost_records"], warning["lost_bytes"]) == (10, size)
    assert out.stderr.count("\n") == 1 and "was deleted while open" in out.stderr


# --- logrotate's `create` mode ---------------------------------------------------------------------------------------

ROTATE_THEN_LOG = """
    import os, subprocess, time
    from mlops_logging import configure_logging, get_logger
    path = configure_logging("svc", log_dir={log_dir!r}, stdout=False)
    log = get_logger("app")
    log.info("one")
    {rotate}
    log.info("two")                         # within the check interval: still the renamed file
    time.sleep(1.1)
    log.info("three")                       # past it: the new file the rotation created
    log.info("four")
"""


def _assert_rotated_into_the_new_file(log_dir: Path, rotated: Path) -> None:
    assert [r["message"] for r in read_records(rotated)] == ["one", "two"]
    assert [r["message"] for r in read_records(log_dir / "svc.log")] == ["three", "four"]


def test_logrotate_create_sequence_the_records_after_the_check_interval_land_in_the_new_file(tmp_path: Path) -> None:
    # logrotate's `create`: rename the file, then create a new empty one at the path (mode 0640), no signal.
    rotate = ("os.rename(path, str(path) + '.1'); "
              "os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))")
    run_python(ROTATE_THEN_LOG.format(log_dir=str(tmp_path), rotate=rotate))
    _assert_rotated_into_the_new_file(tmp_path, tmp_path / "svc.log.1")


def test_the_real_logrotate_in_create_mode_loses_nothing_and_the_new_file_gets_the_new_records(tmp_path: Path) -> None:
    binary = shutil.which("logrotate")
    if binary is None:
        print("logrotate is not installed (Debian: apt-get install logrotate); the rename+create test above covers "
              "the same sequence")
        pytest.skip("logrotate is not installed")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{tmp_path / 'logs' / 'svc.log'} {{\n    create 0640\n    rotate 3\n    missingok\n}}\n")
    rotate = (f"subprocess.run([{binary!r}, '--force', '--state', {str(tmp_path / 'state')!r}, {str(conf)!r}], "
              "check=True)")
    run_python(ROTATE_THEN_LOG.format(log_dir=str(tmp_path / "logs"), rotate=rotate))
    _assert_rotated_into_the_new_file(tmp_path / "logs", tmp_path / "logs" / "svc.log.1")


# --- size rotation that an attacker or an accident gets in the way of ---------------------------------------------


def test_a_planted_lock_file_symlink_cannot_stop_size_rotation(tmp_path: Path) -> None:
    log_dir = tmp_path / "svc"
    log_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (log_dir / ".svc.log.lock").symlink_to(victim)  # the lock file older versions used, planted as a symlink
    out = run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(log_dir)!r}, stdout=False, max_bytes="16k", backups=100)
        log = get_logger("app")
        for i in range(2000):
            log.info("payload", i=i)
    """)
    files = sorted(log_dir.glob("svc.log*"))
    assert len(files) > 5, "size rotation should have happened"
    numbers = sorted(r["i"] for path in files for r in read_records(path))
    assert numbers == list(range(2000))
    assert victim.read_text() == "precious\n" and (log_dir / ".svc.log.lock").is_symlink()
    assert out.stderr == ""


def test_when_rotation_is_impossible_logging_goes_on_unrotated_and_says_so_once(tmp_path: Path) -> None:
    log_dir = tmp_path / "svc"
    (log_dir / "svc.log.1").mkdir(parents=True)  # a directory where the backup must go: rename(2) refuses
    (log_dir / "svc.log.1" / "keep").write_text("x")
    out = run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(log_dir)!r}, stdout=False, max_bytes="16k", backups=1)
        log = get_logger("app")
        for i in range(2000):
            log.info("payload", i=i)
    """)
    records = read_records(log_dir / "svc.log")
    assert [r["i"] for r in records if r["logger"] == "app"] == list(range(2000))
    (warning,) = [r for r in records if r["logger"] == "mlops_logging"]
    assert warning["level"] == "WARNING" and warning["message"].startswith(f"cannot rotate log file {log_dir}/svc.log")
    assert "logging goes on into the unrotated file" in warning["message"] and warning["error"]
    assert out.stderr.count("\n") == 1 and "cannot rotate log file" in out.stderr


# --- the loss report without root: the write hook plays the full disk --------------------------------------------


def test_the_loss_report_counts_exactly_what_refused_and_cut_writes_lost(tmp_path: Path) -> None:
    out = run_python(f"""
        import errno, os
        from mlops_logging import configure_logging, get_logger, _files as files
        plan = []      # what the next write() syscalls do: "full" (ENOSPC) or a byte count (a short write)
        def write(fd, data):
            if plan:
                step = plan.pop(0)
                if step == "full":
                    raise OSError(errno.ENOSPC, "No space left on device")
                return os.write(fd, bytes(data[:step]))
            return os.write(fd, data)
        files.LogFile._write = staticmethod(write)   # the syscall seam: no root, no tmpfs
        configure_logging("svc", log_dir={str(tmp_path)!r}, stdout=False)
        log = get_logger("app")
        log.info("kept")
        plan.append("full")
        log.info("refused outright", n=1)
        plan.append("full")                  # the loss report is refused too, so this record is counted untried
        log.info("counted while the report waits", n=2)
        log.info("after the first outage")   # the report goes first, then this record
        plan += [20, "full"]                 # the disk fills after 20 bytes of this record; the retry is refused
        log.info("cut by the full disk", pad="x" * 200)
        log.info("after the second outage")
        print(os.getpid())
    """)
    pid = int(out.stdout.split()[-1])

    def size(message: str, **fields: object) -> int:
        return len(render_json({"timestamp": "2026-01-01T00:00:00.000Z", "level": "INFO", "message": message,
                                "service": "svc", "logger": "app", "pid": pid, **fields}))

    lines = read_lines(tmp_path / "svc.log")
    assert len(lines) == 6, lines
    kept, first, after_first, torn, second, after_second = lines
    assert json.loads(kept)["message"] == "kept" and json.loads(after_first)["message"] == "after the first outage"
    assert len(torn) == 20 and torn.startswith(b'{"timestamp":"')  # what the disk took of the cut record
    assert json.loads(after_second)["message"] == "after the second outage"
    for line, lost_records, lost_bytes in (
        (first, 2, size("refused outright", n=1) + size("counted while the report waits", n=2)),
        (second, 1, size("cut by the full disk", pad="x" * 200)),  # the torn 20 bytes are no record: all lost
    ):
        report = json.loads(line)
        assert_valid(report)
        assert report["level"] == "WARNING" and report["logger"] == "mlops_logging"
        assert "log file write failed" in report["message"] and "No space left on device" in report["error"]
        assert (report["lost_records"], report["lost_bytes"]) == (lost_records, lost_bytes)
        assert report["lost_since"] <= report["lost_until"]
