"""configure_logging as services use it: each test runs a real process and reads the file it wrote."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from mlops_logging.testing import assert_valid, read_records
from support.procs import run_python
from support.records import read_lines


def test_every_record_of_every_kind_matches_the_schema(log_root: Path) -> None:
    run_python("""
        import logging, warnings
        from mlops_logging import configure_logging, get_logger
        configure_logging("training")
        log = get_logger("train")
        log.debug("hidden at INFO")
        log.info("epoch done", epoch=1, loss=0.25)
        log.warning("lr high", lr=1.0)
        logging.getLogger("third.party").error("stdlib %s", "error")
        logging.getLogger("custom").log(25, "custom level")
        try:
            {}["missing"]
        except KeyError:
            log.exception("lookup failed")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
        log.critical("done")
    """)
    records = read_records(log_root / "training" / "training.log")
    assert [r["message"] for r in records][:5] == ["epoch done", "lr high", "stdlib error", "custom level",
                                                 "lookup failed"]
    assert [r["level"] for r in records] == ["INFO", "WARNING", "ERROR", "INFO", "ERROR", "WARNING", "CRITICAL"]
    assert all(r["service"] == "training" and isinstance(r["pid"], int) for r in records)
    assert "deprecated thing" in records[5]["message"] and records[5]["logger"] == "py.warnings"


def test_uvicorn_gunicorn_stdlib_and_structlog_records_share_one_file_and_one_schema(log_root: Path) -> None:
    run_python("""
        import logging, logging.config
        import uvicorn.config
        from gunicorn.glogging import Logger as GunicornLogger  # noqa: F401 - its loggers exist as in a server
        # uvicorn configures its own handlers first (propagate=False), as when it imports the app
        logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
        from mlops_logging import configure_logging, get_logger
        configure_logging("fastapi")
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200)
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 42)
        logging.getLogger("httpx").warning("HTTP Request: GET http://x")
        get_logger("app").info("structlog line", route="/")
    """)
    path = log_root / "fastapi" / "fastapi.log"
    records = read_records(path)
    assert [r["logger"] for r in records] == ["uvicorn.error", "uvicorn.access", "gunicorn.error", "httpx", "app"]
    assert records[1]["message"] == '127.0.0.1:5000 - "GET / HTTP/1.1" 200'
    assert "color_message" not in records[0]
    # Same field names in the same order for both paths, and uvicorn's handlers no longer print their own lines.
    fixed = ["timestamp", "level", "message", "service", "logger", "pid"]
    assert all(list(r)[:6] == fixed for r in records)


def test_structlog_and_stdlib_agree_byte_for_byte(log_root: Path) -> None:
    run_python("""
        import logging, structlog
        from unittest import mock
        from mlops_logging import configure_logging, get_logger
        configure_logging("inference")
        structlog.contextvars.bind_contextvars(request_id="req-1", run_id="run-9")
        with mock.patch("time.time", return_value=1795680000.25):
            try:
                raise ValueError("bad batch")
            except ValueError:
                get_logger("same").error("failed", exc_info=True, batch=3, api_key="k")
                logging.getLogger("same").error("failed", exc_info=True, extra={"batch": 3, "api_key": "k"})
    """)
    first, second = read_lines(log_root / "inference" / "inference.log")
    a, b = json.loads(first), json.loads(second)
    # The traceback lines differ only in the line number of the call; everything else is byte-identical.
    a_exc, b_exc = a.pop("exception"), b.pop("exception")
    assert a_exc.splitlines()[0] == b_exc.splitlines()[0] and a_exc.splitlines()[-1] == b_exc.splitlines()[-1]
    assert json.dumps(a) == json.dumps(b)
    assert a == {"timestamp": "2026-11-26T08:00:00.250Z", "level": "ERROR", "message": "failed",
                 "service": "inference", "logger": "same", "pid": a["pid"], "batch": 3, "api_key": "[REDACTED]",
                 "request_id": "req-1", "run_id": "run-9"}


def test_context_bound_with_contextvars_is_on_every_record_of_that_context(log_root: Path) -> None:
    run_python("""
        import asyncio, logging, structlog
        from mlops_logging import configure_logging, get_logger
        configure_logging("fastapi")
        async def handle(rid):
            structlog.contextvars.bind_contextvars(request_id=rid)
            await asyncio.sleep(0.01)
            get_logger("h").info("step one")
            logging.getLogger("h").info("step two")
        async def main():
            await asyncio.gather(*(handle(f"r{i}") for i in range(20)))
        asyncio.run(main())
        get_logger("h").info("outside")
    """)
    records = read_records(log_root / "fastapi" / "fastapi.log")
    inside = [r for r in records if r["message"] != "outside"]
    assert len(inside) == 40
    for rid in (f"r{i}" for i in range(20)):
        assert sorted(r["message"] for r in inside if r["request_id"] == rid) == ["step one", "step two"]
    assert "request_id" not in records[-1]


def test_restart_appends_to_the_same_file(log_root: Path) -> None:
    program = """
        from mlops_logging import configure_logging, get_logger
        configure_logging("training")
        get_logger().info("run")
    """
    run_python(program)
    run_python(program)
    records = read_records(log_root / "training" / "training.log")
    assert [r["message"] for r in records] == ["run", "run"] and records[0]["pid"] != records[1]["pid"]


def test_missing_log_directory_is_created_with_safe_modes(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "svc"
    run_python(f"""
        import os
        os.umask(0o022)
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(target)!r})
        get_logger().info("hello")
    """)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    assert stat.S_IMODE((target / "svc.log").stat().st_mode) == 0o640
    assert read_records(target / "svc.log")[0]["message"] == "hello"


def test_env_vars_configure_everything_and_arguments_win(tmp_path: Path) -> None:
    env = {"MLOPS_SERVICE": "inference", "MLOPS_LOG_DIR": str(tmp_path / "exact"), "MLOPS_LOG_LEVEL": "DEBUG",
           "MLOPS_LOG_FORMAT": "text"}
    run_python("""
        from mlops_logging import configure_logging, get_logger
        path = configure_logging()
        get_logger("x").debug("debug shown")
        configure_logging(fmt="json", level="WARNING")
        get_logger("y").info("info hidden")
        get_logger("y").warning("json now")
    """, env=env)
    lines = read_lines(tmp_path / "exact" / "inference.log")
    assert lines[0].endswith(b" DEBUG x: debug shown service=inference pid=" + lines[0].rsplit(b"=", 1)[1])
    assert json.loads(lines[1])["message"] == "json now" and len(lines) == 2


def test_calling_twice_or_in_a_forked_worker_never_duplicates_lines(log_root: Path) -> None:
    run_python("""
        import logging, os
        from mlops_logging import configure_logging, get_logger
        configure_logging("fastapi")
        configure_logging("fastapi")
        assert sum(getattr(h, "_mlops_logging", False) for h in logging.getLogger().handlers) == 1
        logging.getLogger("parent").info("parent line")
        pid = os.fork()
        if pid == 0:
            configure_logging("fastapi")  # what a gunicorn post_fork hook does
            logging.getLogger("worker").info("worker line")
            get_logger("worker").info("worker structlog line")
            os._exit(0)
        os.waitpid(pid, 0)
        logging.getLogger("parent").info("parent again")
        print(len(os.listdir(f"/proc/{os.getpid()}/fd")))
    """)
    records = read_records(log_root / "fastapi" / "fastapi.log")
    assert [r["message"] for r in records] == ["parent line", "worker line", "worker structlog line", "parent again"]
    assert records[1]["pid"] == records[2]["pid"] != records[0]["pid"] == records[3]["pid"]


def test_reconfiguring_many_times_leaks_no_descriptors(tmp_path: Path) -> None:
    out = run_python(f"""
        import os
        from mlops_logging import configure_logging
        def fds(): return len(os.listdir("/proc/self/fd"))
        configure_logging("a", log_dir={str(tmp_path)!r})
        before = fds()
        for i in range(50):
            configure_logging("a", log_dir={str(tmp_path)!r})
            configure_logging("b", log_dir={str(tmp_path)!r})
        configure_logging("a", log_dir={str(tmp_path)!r})
        print(before, fds())
    """).stdout.split()
    assert out[-2] == out[-1]


def test_stdout_gets_a_human_readable_line(log_root: Path) -> None:
    out = run_python("""
        from mlops_logging import configure_logging, get_logger
        configure_logging("training")
        get_logger("train").info("epoch done", epoch=2)
    """).stdout
    assert out.endswith(" INFO train: epoch done epoch=2\n") and out.count("\n") == 1


def test_a_planted_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / "svc.log").symlink_to(victim)
    strict = run_python(f"""
        from mlops_logging import configure_logging
        configure_logging("svc", log_dir={str(log_dir)!r}, strict=True)
    """, check=False)
    assert strict.returncode != 0
    assert f"refusing to open log file {log_dir / 'svc.log'}: it is a symlink" in strict.stderr
    lenient = run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(log_dir)!r})
        get_logger("x").info("still running")
    """)
    assert "it is a symlink" in lenient.stderr and lenient.stderr.count("\n") == 1
    assert "still running" in lenient.stdout
    assert victim.read_text() == "precious\n"


def test_a_traversal_service_name_is_refused(tmp_path: Path) -> None:
    proc = run_python(f"""
        from mlops_logging import configure_logging
        configure_logging("../../etc/cron.d/x", log_dir={str(tmp_path)!r}, strict=True)
    """, check=False)
    assert proc.returncode != 0 and "invalid service name '../../etc/cron.d/x'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_secrets_are_redacted_on_both_paths(log_root: Path) -> None:
    run_python("""
        import logging
        from mlops_logging import configure_logging, get_logger
        configure_logging("fastapi")
        get_logger().info("call", api_key="sk-live", headers={"Authorization": "Bearer abc", "accept": "json"},
                          max_tokens=16)
        logging.getLogger("x").info("login", extra={"password": "hunter2", "hf_token": "hf_abc"})
    """)
    text = (log_root / "fastapi" / "fastapi.log").read_text()
    for secret in ("sk-live", "Bearer abc", "hunter2", "hf_abc"):
        assert secret not in text
    first, second = read_records(log_root / "fastapi" / "fastapi.log")
    assert first["headers"] == {"Authorization": "[REDACTED]", "accept": "json"} and first["max_tokens"] == 16
    assert second["password"] == second["hf_token"] == "[REDACTED]"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_newlines_and_control_characters_can_never_forge_a_record(log_root: Path, fmt: str) -> None:
    forged = '{"timestamp":"2020-01-01T00:00:00.000Z","level":"CRITICAL","message":"forged","service":"x"}'
    run_python(f"""
        import logging
        from mlops_logging import configure_logging, get_logger
        configure_logging("fastapi", fmt={fmt!r})
        evil = "user input\\n" + {forged!r} + "\\r\\n\\x1b[2Kmore\\u2028end"
        get_logger().info(evil, field=evil)
        logging.getLogger("x").info(evil)
    """)
    lines = read_lines(log_root / "fastapi" / "fastapi.log")
    assert len(lines) == 2
    if fmt == "json":
        assert [json.loads(line)["message"].startswith("user input\n{") for line in lines] == [True, True]
    else:
        assert all(b"\r" not in line and b"\x1b" not in line for line in lines)


def test_unwritable_log_dir_raises_in_strict_mode_and_falls_back_to_stdout_otherwise(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    bad = blocker / "logs"
    strict = run_python(f"""
        from mlops_logging import configure_logging
        configure_logging("svc", log_dir={str(bad)!r}, strict=True)
    """, check=False)
    assert strict.returncode != 0 and f"LogSetupError: cannot create log directory {bad}" in strict.stderr
    lenient = run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(bad)!r})
        for i in range(3):
            get_logger("x").info("served", i=i)
    """, env={"MLOPS_LOG_STRICT": "0"})
    assert lenient.stderr.count("mlops_logging:") == 1 and str(bad) in lenient.stderr
    assert lenient.stdout.count("served") == 3


def test_file_removed_or_renamed_while_running_is_recreated_without_loss(log_root: Path) -> None:
    run_python("""
        import os, time
        from mlops_logging import configure_logging, get_logger
        path = configure_logging("training", stdout=False)
        log = get_logger()
        log.info("one")
        os.rename(path, str(path) + ".1")      # logrotate 'create' mode
        log.info("two")                         # still reaches the renamed file
        time.sleep(1.1)
        log.info("three")                       # noticed the rename: new file
        os.unlink(path)                          # deleted by hand
        time.sleep(1.1)
        log.info("four")
        with open(path, "r+b") as f:             # copytruncate
            f.truncate(0)
        log.info("five")
    """)
    directory = log_root / "training"
    assert [r["message"] for r in read_records(directory / "training.log.1")] == ["one", "two"]
    data = (directory / "training.log").read_bytes()
    assert b"\x00" not in data and [json.loads(x)["message"] for x in data.splitlines()] == ["five"]


def test_loggers_created_before_a_reconfiguration_follow_it(tmp_path: Path) -> None:
    run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("a", log_dir={str(tmp_path / "a")!r})
        log = get_logger("cached")
        log.info("to a")
        configure_logging("b", log_dir={str(tmp_path / "b")!r})
        log.info("to b")
    """)
    assert [r["message"] for r in read_records(tmp_path / "a" / "a.log")] == ["to a"]
    assert [(r["message"], r["service"]) for r in read_records(tmp_path / "b" / "b.log")] == [("to b", "b")]


def test_log_file_descriptor_is_close_on_exec_also_after_a_reopen(log_root: Path) -> None:
    out = run_python("""
        import fcntl
        from mlops_logging import configure_logging
        from mlops_logging._config import _open_files
        configure_logging("svc")
        (logfile,) = _open_files.values()
        print(bool(fcntl.fcntl(logfile.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
        logfile.reopen()
        print(bool(fcntl.fcntl(logfile.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC))
    """).stdout.split()
    assert out[-2:] == ["True", "True"]


# --- a record that cannot be built never raises into the caller ---------------------------------------------------

UNRENDERABLE = """
    import collections.abc, logging
    from mlops_logging import configure_logging, get_logger
    configure_logging("svc", stdout=False)

    class BadStr:
        def __str__(self):
            raise RuntimeError("no str for you")

    class BadMapping(collections.abc.Mapping):
        def __getitem__(self, key):
            raise KeyError(key)
        def __iter__(self):
            raise RuntimeError("no iteration")
        def __len__(self):
            return 1

    slog, std = get_logger("app"), logging.getLogger("app")
    for log in (slog, std):
        log.warning(BadStr())
        log.info("fields", {kw}=BadMapping())
        log.error("bad exc_info", exc_info=(1, 2, 3))
        log.critical("bad %d format", "x")
    slog.log(25, "a custom level %s", "number")   # structlog's own log() raises KeyError for 25
    print("the caller saw no exception")
"""


def test_a_record_that_cannot_be_built_becomes_a_record_that_says_so_on_both_paths(log_root: Path) -> None:
    program = UNRENDERABLE.replace("log.info(\"fields\", {kw}=BadMapping())",
                                   "log.info(\"fields\", **({'data': BadMapping()} if log is slog else "
                                   "{'extra': {'data': BadMapping()}}))")
    out = run_python(program)
    assert "the caller saw no exception" in out.stdout
    assert out.stderr == ""  # no traceback from logging's handleError either
    records = read_records(log_root / "svc" / "svc.log")
    assert [r["level"] for r in records] == ["WARNING", "INFO", "ERROR", "CRITICAL"] * 2 + ["INFO"]
    assert records[-1]["message"] == "a custom level number"
    structlog_part, stdlib_part = records[:4], records[4:8]
    for part in (structlog_part, stdlib_part):
        bad_str, bad_mapping, bad_exc_info, bad_format = part
        assert all(r["logger"] == "app" and r["service"] == "svc" for r in part)
        assert "RuntimeError: no str for you" in bad_str["render_error"]
        assert bad_str["message"].startswith("log record could not be rendered: RuntimeError: no str for you")
        assert "RuntimeError: no iteration" in bad_mapping["render_error"]
        assert bad_mapping["message"].startswith("log record 'fields' could not be rendered: RuntimeError")
        assert bad_exc_info["message"].startswith("log record 'bad exc_info' could not be rendered:")
        assert "render_error" in bad_exc_info and "exception" not in bad_exc_info
        assert bad_format["message"].startswith("'bad %d format' % ('x',) (formatting failed: TypeError:")
    # One helper makes these records: the two paths say the same thing.
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timestamp", "render_error", "message")}  # noqa: E731
    assert [strip(r) for r in structlog_part] == [strip(r) for r in stdlib_part]


# --- reserved fields ---------------------------------------------------------------------------------------------


def test_call_and_context_fields_never_replace_the_reserved_fields(log_root: Path) -> None:
    run_python("""
        import logging, structlog
        from unittest import mock
        from mlops_logging import configure_logging, get_logger
        configure_logging("inference", stdout=False)
        structlog.contextvars.bind_contextvars(pid="from-context", run_id="run-1")
        clash = {"timestamp": 1700000000, "level": "VERBOSE", "service": "billing", "logger": "other", "batch": 3}
        with mock.patch("time.time", return_value=1795680000.25):
            get_logger("same").info("x", **clash)
            logging.getLogger("same").info("x", extra=clash)
            get_logger("same").info("x", message="call message", level_="taken")
            logging.getLogger("same").info({"message": "x", "service": "billing"})
        structlog.contextvars.clear_contextvars()
    """)
    lines = read_lines(log_root / "inference" / "inference.log")
    records = [json.loads(line) for line in lines]
    for record in records:
        assert_valid(record)
        assert (record["timestamp"], record["level"], record["message"], record["service"], record["logger"]) == (
            "2026-11-26T08:00:00.250Z", "INFO", "x", "inference", "same")
        assert isinstance(record["pid"], int) and record["pid"] > 1 and record["pid_"] == "from-context"
    structlog_line, stdlib_line, renamed, from_dict = records
    assert {k: v for k, v in structlog_line.items() if k.endswith("_")} == {
        "timestamp_": 1700000000, "level_": "VERBOSE", "service_": "billing", "logger_": "other",
        "pid_": "from-context"}
    assert lines[0] == lines[1]  # the two paths still agree byte for byte
    assert renamed["message_"] == "call message" and renamed["level_"] == "taken"
    assert from_dict["service_"] == "billing"
