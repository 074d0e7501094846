"""Where a service logs: arguments beat MLOPS_* variables, which beat defaults; bad values fail in one clear line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlops_logging import LogSetupError
from mlops_logging._settings import resolve_settings, validate_service


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
    [({"MLOPS_LOG_LEVEL": "LOUD"}, "log level 'LOUD' from MLOPS_LOG_LEVEL is not known: use one of DEBUG, INFO,"),
     ({"MLOPS_LOG_FORMAT": "xml"}, "log format 'xml' from MLOPS_LOG_FORMAT is not known: use json or text"),
     ({"MLOPS_LOG_STRICT": "maybe"}, "'maybe' from MLOPS_LOG_STRICT is not a boolean: use 1/0, true/false, yes/no "
                                     "or on/off (any case)"),
     ({"MLOPS_LOG_MAX_BYTES": "lots"}, "'lots' from MLOPS_LOG_MAX_BYTES is not a size: use a number of bytes"),
     ({"MLOPS_LOG_BACKUPS": "two"}, "'two' from MLOPS_LOG_BACKUPS is not a whole number"),
     ({"MLOPS_LOG_BACKUPS": "-1"}, "'-1' from MLOPS_LOG_BACKUPS is not a whole number"),
     ({"MLOPS_LOG_MAX_BYTES": "1m", "MLOPS_LOG_BACKUPS": "0"}, "0 backups from MLOPS_LOG_BACKUPS: size rotation "
                                                              "(MLOPS_LOG_MAX_BYTES) needs at least 1 backup"),
     ({"MLOPS_SERVICE": "../x"}, "invalid service name '../x' from MLOPS_SERVICE: use 1-128 characters")],
)
def test_bad_settings_name_the_variable_and_the_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(LogSetupError) as info:
        resolve_settings(env={"MLOPS_SERVICE": "svc", **env})
    message = str(info.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"level": "LOUD"}, "log level 'LOUD' from argument level= is not known: use one of DEBUG, INFO, WARNING,"),
     ({"level": True}, "log level True from argument level= is not known"),
     ({"fmt": "xml"}, "log format 'xml' from argument fmt= is not known: use json or text"),
     ({"fmt": 3}, "log format 3 from argument fmt= is not known"),
     ({"strict": "maybe"}, "'maybe' from argument strict= is not a boolean"),
     ({"max_bytes": -1}, "-1 from argument max_bytes= is not a size: it must not be negative"),
     ({"max_bytes": "lots"}, "'lots' from argument max_bytes= is not a size"),
     ({"backups": "x"}, "'x' from argument backups= is not a whole number"),
     ({"max_bytes": "1m", "backups": 0}, "0 backups from argument backups=: size rotation (argument max_bytes=)"),
     ({"service": "../x"}, "invalid service name '../x' from argument service=:"),
     ({"service": ""}, "invalid service name '' from argument service=:")],
)
def test_a_bad_argument_is_named_as_the_argument_even_when_the_variable_is_fine(kwargs: dict, fragment: str) -> None:
    env = {"MLOPS_SERVICE": "svc", "MLOPS_LOG_LEVEL": "INFO", "MLOPS_LOG_FORMAT": "json", "MLOPS_LOG_STRICT": "0",
           "MLOPS_LOG_MAX_BYTES": "0", "MLOPS_LOG_BACKUPS": "0"}
    with pytest.raises(LogSetupError) as info:
        resolve_settings(kwargs.pop("service", None), env=env, **kwargs)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "MLOPS_" not in message.split(":")[0] and "--" not in message  # never logwrap's options for Python callers


def test_a_caller_can_say_how_its_options_are_spelled() -> None:
    names = {"service": "--service", "fmt": "--format", "log_dir": "--log-dir"}
    with pytest.raises(LogSetupError, match=r"invalid service name '\.\./x' from --service:"):
        resolve_settings("../x", env={}, names=names)
    with pytest.raises(LogSetupError, match=r"log format 'xml' from --format is not known"):
        resolve_settings("svc", fmt="xml", env={}, names=names)
    assert resolve_settings("svc", env={}, names=names).dir_fix == "choose another --log-dir / MLOPS_LOG_DIR"
    assert resolve_settings("svc", env={}).dir_fix == "choose another log_dir= / MLOPS_LOG_DIR"


def test_log_setup_error_is_a_value_error() -> None:
    assert issubclass(LogSetupError, ValueError)


@pytest.mark.parametrize("spelling", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " on "])
def test_strict_accepts_the_usual_spellings_of_true(spelling: str) -> None:
    assert resolve_settings("svc", env={"MLOPS_LOG_STRICT": spelling}).strict is True


@pytest.mark.parametrize("spelling", ["0", "false", "False", "no", "NO", "off", "OFF", ""])
def test_strict_accepts_the_usual_spellings_of_false(spelling: str) -> None:
    assert resolve_settings("svc", env={"MLOPS_LOG_STRICT": spelling}).strict is False


@pytest.mark.parametrize("bad", ["2", "maybe", "y", "enabled", "t"])
def test_strict_refuses_anything_else_and_lists_exactly_what_it_accepts(bad: str) -> None:
    with pytest.raises(LogSetupError) as info:
        resolve_settings("svc", env={"MLOPS_LOG_STRICT": bad})
    assert str(info.value).endswith("use 1/0, true/false, yes/no or on/off (any case)")


def test_stdlib_level_numbers_are_accepted() -> None:
    assert resolve_settings("svc", level=logging.DEBUG, env={}).level == "DEBUG"
    assert resolve_settings("svc", level=logging.WARNING, env={}).level == "WARNING"
    assert resolve_settings("svc", level="warn", env={}).level == "WARNING"


def test_sizes_accept_binary_units() -> None:
    assert resolve_settings("s", env={"MLOPS_LOG_MAX_BYTES": "1MiB"}).max_bytes == 1024 * 1024
    assert resolve_settings("s", env={"MLOPS_LOG_MAX_BYTES": "64k"}).max_bytes == 65536
    assert resolve_settings("s", env={"MLOPS_LOG_MAX_BYTES": "1m"}).backups == 5  # rotation implies some backups


def test_missing_service_says_how_to_name_it() -> None:
    with pytest.raises(LogSetupError, match="MLOPS_SERVICE"):
        resolve_settings(env={})
