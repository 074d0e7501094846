"""logwrap's default service name: named after what the command runs, not after the interpreter or launcher."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_logging.wrap._cli import settings_for
from mlops_logging.wrap._command import service_from_command
from mlops_logging.wrap._options import Options


@pytest.mark.parametrize(
    ("argv", "service"),
    [
        # the cases
        (["vllm", "serve", "/models/tiny", "--port", "8000"], "vllm"),
        (["/opt/venv/bin/vllm", "serve"], "vllm"),
        (["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"], "vllm"),
        (["python3", "-m", "vllm.entrypoints.cli.main", "serve", "m"], "vllm"),
        (["mlflow", "server", "--host", "0.0.0.0"], "mlflow"),
        (["python3", "-m", "pkg.mod"], "pkg"),
        # interpreters by any name and path
        (["python3.11", "-m", "gunicorn", "app:app"], "gunicorn"),
        (["/usr/local/bin/python3.12", "-m", "uvicorn", "app:app"], "uvicorn"),
        (["python3.13t", "-m", "pkg"], "pkg"),
        (["pypy3", "-m", "pkg.sub"], "pkg"),
        # python's own options before -m, as python parses them
        (["python", "-u", "-X", "dev", "-W", "ignore", "-m", "pkg"], "pkg"),
        (["python", "-Wignore", "-Xfrozen_modules=off", "-m", "pkg"], "pkg"),
        (["python", "-um", "pkg"], "pkg"),
        (["python", "-mpkg.tool", "--flag"], "pkg"),
        (["python", "-I", "-OO", "-m", "pkg"], "pkg"),
        (["python3", "--check-hash-based-pycs", "always", "-m", "a.b"], "a"),
        (["python", "-X", "importtime", "-m", "x.y", "-m", "other"], "x"),
        # a script: its name without .py
        (["python", "examples/training/train.py", "--epochs", "3"], "train"),
        (["python3", "-u", "/srv/batch_infer.py"], "batch_infer"),
        (["python", "--", "job.py"], "job"),
        # nothing named: the interpreter's name
        (["python", "-c", "import x"], "python"),
        (["python3", "-"], "python3"),
        (["python3.11"], "python3.11"),
        (["python", "-m"], "python"),
        # env, as in shebangs and entrypoints
        (["/usr/bin/env", "python", "-m", "x"], "x"),
        (["env", "A=1", "-u", "B", "--chdir", "/srv", "mlflow", "server"], "mlflow"),
        (["env", "-i", "PATH=/bin", "--", "vllm", "serve"], "vllm"),
        (["/usr/bin/env", "-S", "python3 -u -m vllm.entrypoints.cli.main", "serve"], "vllm"),
        (["env", "--split-string=python3 -m pkg", "x"], "pkg"),
        (["env", "-S", 'python3 "-m'], "env"),  # unbalanced quotes: env will refuse it, the name stays env
        (["env"], "env"),
        (["env", "-i", "A=1"], "env"),
        # launchers that run a command
        (["uv", "run", "python", "-m", "app.main"], "app"),
        (["poetry", "run", "mlflow", "server"], "mlflow"),
        (["pdm", "run", "vllm", "serve"], "vllm"),
        # a launcher with options of its own (which may take values): its own name, pass --service
        (["uv", "run", "--with", "rich", "python", "-m", "app"], "uv"),
        (["sh", "-c", "exec vllm serve m"], "sh"),
    ],
)
def test_service_is_named_after_what_the_command_runs(argv: list[str], service: str) -> None:
    assert service_from_command(argv) == service


@pytest.mark.parametrize(
    ("argv", "service"),
    [
        (["./my prog"], "my_prog"),
        (["python", "-m", "..hidden"], "python"),
        (["python", "-m", "ünï.côde"], "n_"),
        (["/"], "service"),
        (["python", "/srv/.py"], "python"),
        (["x" * 300], "x" * 128),
    ],
)
def test_service_name_is_always_valid(argv: list[str], service: str) -> None:
    name = service_from_command(argv)
    assert name == service
    assert name and len(name) <= 128 and not name.startswith(".") and all(c.isalnum() or c in "_.-" for c in name)


def test_a_bare_string_is_one_program_name() -> None:
    assert service_from_command("/usr/local/bin/mlflow") == "mlflow"


def test_service_flag_and_env_win_over_the_command() -> None:
    command = ("python", "-m", "vllm.entrypoints.cli.main", "serve")
    assert settings_for(Options(command=command), {}).service == "vllm"
    assert settings_for(Options(command=command), {"MLOPS_SERVICE": "llm"}).service == "llm"
    assert settings_for(Options(command=command, service="chat"), {"MLOPS_SERVICE": "llm"}).service == "chat"


_WORDS = st.sampled_from(["python", "python3.11", "env", "uv", "run", "-m", "-c", "-u", "-X", "-W", "-S", "--",
                          "-", "A=1", "pkg.mod", "x.py", "'", '"', "-i", "-um", "--check-hash-based-pycs", ""])


@given(st.lists(st.one_of(_WORDS, st.text(max_size=12)), min_size=1, max_size=8))
def test_any_command_line_gives_a_valid_name_and_never_raises(argv: list[str]) -> None:
    name = service_from_command(argv)
    assert name and len(name) <= 128 and not name.startswith(".") and ".." not in name
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
