"""A bad configuration stops a service at start with one line naming the value, where it came from and the fix;
a host that cannot give a safe log directory (umask 000, another user's symlink) is refused or made safe."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_logging.testing import read_records
from support.procs import run_python

WRAP = [sys.executable, "-m", "mlops_logging.wrap"]


@pytest.mark.parametrize(
    ("call", "env", "needle"),
    [
        ('configure_logging("svc")', {"MLOPS_LOG_LEVEL": "LOUD"},
         "log level 'LOUD' from MLOPS_LOG_LEVEL is not known: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ('configure_logging("svc", level="LOUD")', {"MLOPS_LOG_LEVEL": "DEBUG"},
         "log level 'LOUD' from argument level= is not known: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ('configure_logging("svc", fmt="xml")', {},
         "log format 'xml' from argument fmt= is not known: use json or text"),
        ('configure_logging("svc")', {"MLOPS_LOG_FORMAT": "xml"},
         "log format 'xml' from MLOPS_LOG_FORMAT is not known"),
        ('configure_logging("../x")', {}, "invalid service name '../x' from argument service=: use 1-128 characters"),
        ('configure_logging()', {"MLOPS_SERVICE": "a/b"}, "invalid service name 'a/b' from MLOPS_SERVICE:"),
        ('configure_logging()', {}, "no service name: use service= or set MLOPS_SERVICE"),
        ('configure_logging("svc", max_bytes="lots")', {}, "'lots' from argument max_bytes= is not a size"),
        ('configure_logging("svc", max_bytes=-5)', {}, "-5 from argument max_bytes= is not a size"),
        ('configure_logging("svc")', {"MLOPS_LOG_MAX_BYTES": "1m", "MLOPS_LOG_BACKUPS": "none"},
         "'none' from MLOPS_LOG_BACKUPS is not a whole number"),
        ('configure_logging("svc")', {"MLOPS_LOG_STRICT": "sure"},
         "'sure' from MLOPS_LOG_STRICT is not a boolean: use 1/0, true/false, yes/no or on/off (any case)"),
    ],
)
def test_a_bad_setting_stops_the_service_at_start_with_one_line_naming_it(
    tmp_path: Path, call: str, env: dict[str, str], needle: str
) -> None:
    proc = run_python(f"""
        from mlops_logging import configure_logging
        {call}
        print("started")
    """, env=env, check=False, cwd=tmp_path)
    assert proc.returncode == 1 and "started" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"mlops_logging.LogSetupError: {needle}" or (
        last.startswith("mlops_logging.LogSetupError: ") and needle in last), last
    assert "--log-dir" not in proc.stderr and "--service" not in proc.stderr  # logwrap's options are not Python's
    assert not list(tmp_path.rglob("*.log")), "no file may be opened for a bad configuration"


def test_a_traversal_service_name_never_yields_a_path_outside_the_log_root(log_root: Path) -> None:
    proc = run_python("""
        from mlops_logging import LogSetupError, configure_logging
        try:
            print(configure_logging("../x"))
        except LogSetupError as exc:
            print("refused:", isinstance(exc, ValueError))
    """)
    assert proc.stdout == "refused: True\n"
    assert not log_root.parent.joinpath("x.log").exists() and not list(log_root.parent.rglob("*.log"))


def test_a_run_time_condition_still_falls_back_to_stdout_with_a_python_hint(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(blocker / "logs")!r})
        get_logger("x").info("served")
    """)
    assert proc.stderr.count("\n") == 1 and "choose another log_dir= / MLOPS_LOG_DIR" in proc.stderr
    assert "--log-dir" not in proc.stderr and "served" in proc.stdout


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--service", "../x"], {}, b"logwrap: invalid service name '../x' from --service: use 1-128"),
        ([], {"MLOPS_LOG_FORMAT": "xml"}, b"logwrap: log format 'xml' from MLOPS_LOG_FORMAT is not known"),
        ([], {"MLOPS_LOG_STRICT": "sure"}, b"logwrap: 'sure' from MLOPS_LOG_STRICT is not a boolean"),
        ([], {"MLOPS_LOG_MAX_BYTES": "1m", "MLOPS_LOG_BACKUPS": "0"},
         b"logwrap: 0 backups from MLOPS_LOG_BACKUPS: size rotation (MLOPS_LOG_MAX_BYTES) needs at least 1 backup"),
    ],
)
def test_logwrap_names_its_own_options_and_variables_and_exits_2(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: bytes
) -> None:
    result = subprocess.run([*WRAP, "--log-dir", str(tmp_path / "logs"), *args, "--", "true"], capture_output=True,
                            timeout=30, check=False, env={**os.environ, **env})
    assert result.returncode == 2 and result.stderr.count(b"\n") == 1, result.stderr
    assert result.stderr.startswith(needle), result.stderr
    assert b"argument " not in result.stderr and b"=:" not in result.stderr


# --- the directories on the way to the log file ------------------------------------------------------------------


def test_every_directory_created_under_umask_000_is_0750_and_the_file_0640(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "svc"
    run_python(f"""
        import os
        os.umask(0)
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(target)!r}, stdout=False)
        get_logger().info("hello")
    """)
    for directory in (tmp_path / "deep", tmp_path / "deep" / "er", target):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750, directory
    assert stat.S_IMODE((target / "svc.log").stat().st_mode) == 0o640
    assert read_records(target / "svc.log")[0]["message"] == "hello"


def test_the_default_root_and_service_directories_under_umask_000_are_0750(tmp_path: Path) -> None:
    run_python("""
        import os
        os.umask(0)
        from mlops_logging import configure_logging
        configure_logging("svc", stdout=False)
    """, env={"MLOPS_LOG_ROOT": str(tmp_path / "root" / "logs")})
    for directory in (tmp_path / "root", tmp_path / "root" / "logs", tmp_path / "root" / "logs" / "svc"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750, directory


@pytest.mark.parametrize("how", ["configure_logging", "logwrap"])
def test_file_mode_setting_applies_to_new_files_and_directories(tmp_path: Path, how: str) -> None:
    """MLOPS_LOG_FILE_MODE=0644 (what our images set): files 0644, directories created for them 0755, even under
    umask 000; a file that already exists keeps its mode."""
    target = tmp_path / "new" / "svc"
    env = {"MLOPS_LOG_FILE_MODE": "0644"}
    if how == "configure_logging":
        run_python(f"""
            import os
            os.umask(0)
            from mlops_logging import configure_logging, get_logger
            configure_logging("svc", log_dir={str(target)!r}, stdout=False)
            get_logger().info("hello")
        """, env=env)
    else:
        subprocess.run(["sh", "-c", 'umask 000 && exec "$@"', "sh", *WRAP, "--service", "svc", "--log-dir",
                        str(target), "--", "echo", "hello"], env={**os.environ, **env}, check=True,
                       capture_output=True)
    for directory in (tmp_path / "new", target):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
    log = target / "svc.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o644
    assert any(r["message"] == "hello" for r in read_records(log))
    log.chmod(0o600)  # an existing file keeps the mode it has
    run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(target)!r}, stdout=False)
        get_logger().info("again")
    """, env=env)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@pytest.mark.parametrize("value", ["0777", "0666", "0400", "0755", "rw-r--r--", "01644"])
def test_a_file_mode_others_could_write_or_execute_stops_the_service_at_start(tmp_path: Path, value: str) -> None:
    result = subprocess.run([*WRAP, "--service", "svc", "--log-dir", str(tmp_path), "--", "true"],
                            env={**os.environ, "MLOPS_LOG_FILE_MODE": value}, capture_output=True)
    assert result.returncode == 2 and result.stderr.count(b"\n") == 1, result.stderr
    assert b"from MLOPS_LOG_FILE_MODE" in result.stderr and b"0644" in result.stderr
    assert not (tmp_path / "svc.log").exists()


@pytest.fixture
def foreign_symlink(tmp_path: Path) -> tuple[Path, Path]:
    """``<tmp>/logs/svc`` -> ``<tmp>/elsewhere``, the symlink owned by uid 12345 (another user)."""
    if os.geteuid() != 0:
        pytest.skip("giving a symlink to another user needs root")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "logs").mkdir()
    link = tmp_path / "logs" / "svc"
    link.symlink_to(elsewhere)
    os.lchown(link, 12345, 12345)
    return link, elsewhere


def test_a_symlink_another_user_owns_on_the_way_to_the_log_file_is_refused(foreign_symlink: tuple[Path, Path]) -> None:
    link, elsewhere = foreign_symlink
    strict = run_python(f"""
        from mlops_logging import configure_logging
        configure_logging("svc", log_dir={str(link)!r}, strict=True)
    """, check=False)
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines()[-1] == (
        f"mlops_logging.LogSetupError: refusing log directory {link}: {link} is a symlink owned by uid 12345, "
        f"neither root nor this user (uid 0); replace it with a real directory or choose another log_dir= / "
        "MLOPS_LOG_DIR")
    lenient = run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(link / "deeper")!r})
        get_logger("x").info("still serving")
    """)
    assert "is a symlink owned by uid 12345" in lenient.stderr and lenient.stderr.count("\n") == 1
    assert "still serving" in lenient.stdout
    assert list(elsewhere.iterdir()) == []  # nothing was created or written through the link


def test_logwrap_refuses_the_same_symlink(foreign_symlink: tuple[Path, Path]) -> None:
    link, elsewhere = foreign_symlink
    result = subprocess.run([*WRAP, "--log-dir", str(link), "--strict", "--", "true"], capture_output=True,
                            timeout=30, check=False)
    assert result.returncode == 125 and b"is a symlink owned by uid 12345" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_symlink_owned_by_root_or_this_user_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)  # as /logs -> /data/logs in an image
    run_python(f"""
        from mlops_logging import configure_logging, get_logger
        configure_logging("svc", log_dir={str(tmp_path / "link" / "svc")!r}, stdout=False, strict=True)
        get_logger().info("through the link")
    """)
    assert read_records(real / "svc" / "svc.log")[0]["message"] == "through the link"
