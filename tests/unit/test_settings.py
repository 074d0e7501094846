"""Where a service logs: arguments beat MLOPS_* variables, which beat defaults; bad values fail in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_logging import LogSetupError, resolve_settings, validate_service


def test_log_dir_defaults_to_root_slash_service() -> None:
    assert resolve_settings("training", env={}).log_file == Path("logs/training/training.log")
    assert resolve_settings("vllm", env={"MLOPS_LOG_ROOT": "/var/log/mlops"}).log_dir == Path("/var/log/mlops/vllm")


def test_mlops_log_dir_is_that_exact_directory() -> None:
    settings = resolve_settings("vllm", env={"MLOPS_LOG_DIR": "/logs", "MLOPS_LOG_ROOT": "/elsewhere"})
    assert settings.log_file == Path("/logs/vllm.log")


def test_arguments_win_over_environment() -> None:
    env = {"MLOPS_SERVICE": "env-svc", "MLOPS_LOG_DIR": "/env", "MLOPS_LOG_LEVEL": "DEBUG", "MLOPS_LOG_FORMAT": "text"}
    settings = resolve_settings("arg-svc", log_dir="/arg", level="warning", fmt="json", env=env)
    assert (settings.service, settings.log_dir, settings.level, settings.fmt) == ("arg-svc", Path("/arg"), "WARNING",
                                                                                  "json")
    from_env = resolve_settings(env=env)
    assert (from_env.service, from_env.level, from_env.fmt) == ("env-svc", "DEBUG", "text")


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", "", "x" * 129, "a b", "svc\n", "a..b"])
def test_unsafe_service_names_are_refused(name: str) -> None:
    with pytest.raises(LogSetupError, match="invalid service name"):
        validate_service(name)


@pytest.mark.parametrize("name", ["vllm", "fastapi", "batch-inference", "train_v2", "svc.1"])
def test_ordinary_service_names_are_accepted(name: str) -> None:
    assert validate_service(name) == name


@pytest.mark.parametrize(
    ("env", "fragment"),
    [({"MLOPS_LOG_LEVEL": "LOUD"}, "log level 'LOUD' is not known"),
     ({"MLOPS_LOG_FORMAT": "xml"}, "log format 'xml' is not known"),
     ({"MLOPS_LOG_STRICT": "maybe"}, "MLOPS_LOG_STRICT='maybe' is not a boolean"),
     ({"MLOPS_LOG_MAX_BYTES": "lots"}, "MLOPS_LOG_MAX_BYTES='lots' is not a size"),
     ({"MLOPS_LOG_MAX_BYTES": "1m", "MLOPS_LOG_BACKUPS": "0"}, "needs at least 1 backup")],
)
def test_bad_settings_name_the_variable_and_the_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(LogSetupError) as info:
        resolve_settings("svc", env=env)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_sizes_accept_binary_units() -> None:
    assert resolve_settings("s", env={"MLOPS_LOG_MAX_BYTES": "1MiB"}).max_bytes == 1024 * 1024
    assert resolve_settings("s", env={"MLOPS_LOG_MAX_BYTES": "64k"}).max_bytes == 65536
    assert resolve_settings("s", env={"MLOPS_LOG_MAX_BYTES": "1m"}).backups == 5  # rotation implies some backups


def test_missing_service_says_how_to_name_it() -> None:
    with pytest.raises(LogSetupError, match="MLOPS_SERVICE"):
        resolve_settings(env={})
