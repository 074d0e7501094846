"""The container side, checked statically (no Docker engine here): compose files, Dockerfiles, entrypoint scripts.

Compose files against the Compose Specification's JSON schema; every service logs to its own ``../logs/<service>``
mounted at ``/logs`` with ``MLOPS_LOG_DIR=/logs``, has a healthcheck, a restart policy and pinned images; every
Dockerfile passes hadolint with no error and the wrapped servers' ENTRYPOINT is an entrypoint script that execs
logwrap; the scripts pass shellcheck as POSIX sh. What runs inside is checked by the live tests
(tests/integration/test_entrypoints.py, test_vllm_stack.py, test_mlflow_server.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE_SCHEMA = json.loads((REPO / "tests" / "fixtures" / "compose-spec.json").read_text())
COMPOSE_FILES = sorted((REPO / "docker").glob("docker-compose*.yml"))
DOCKERFILES = sorted([*REPO.glob("deployment/**/Dockerfile*"), *(REPO / "docker").glob("Dockerfile*")])
ENTRYPOINT_SCRIPTS = sorted((REPO / "entrypoints").glob("*.sh"))
STACK = REPO / "docker" / "docker-compose.yml"
SERVICES = {"fastapi", "inference", "mlflow", "system", "training", "vllm"}
#: The servers we do not control, run behind logwrap: Dockerfile -> the service its entrypoint writes as.
WRAPPED = {REPO / "deployment" / "serving" / "Dockerfile.vllm": "vllm", REPO / "docker" / "Dockerfile.mlflow": "mlflow"}
RESTART = re.compile(r"no|always|unless-stopped|on-failure(:\d+)?")


class _ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it, with its ``!reset`` merge tag (an override file drops the value: loaded empty)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: {} if isinstance(node, yaml.MappingNode) else
                               [] if isinstance(node, yaml.SequenceNode) else None)


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 (a SafeLoader with two more tags)


@cache
def stack() -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every service of the whole stack (docker-compose.yml and the files it includes): name -> (file, definition)."""
    services: dict[str, tuple[Path, dict[str, Any]]] = {}
    compose = _load(STACK)
    for entry in compose.get("include", []):
        included = (STACK.parent / (entry if isinstance(entry, str) else entry["path"])).resolve()
        services.update({name: (included, svc) for name, svc in _load(included)["services"].items()})
    services.update({name: (STACK, svc) for name, svc in compose["services"].items()})
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def _binds(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of the service's bind mounts, short or long syntax."""
    binds = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        binds.append((source, target))
    return binds


# --- compose ------------------------------------------------------------------------------------------------------


def test_the_repository_ships_the_compose_files_and_the_cpu_override() -> None:
    assert {p.name for p in COMPOSE_FILES} == {"docker-compose.yml", "docker-compose.mlflow.yml",
                                               "docker-compose.cpu.yml"}


def test_the_cpu_override_changes_the_vllm_service_and_nothing_else() -> None:
    override = _load(REPO / "docker" / "docker-compose.cpu.yml")
    assert set(override) == {"services"} and set(override["services"]) == {"vllm"}
    vllm = override["services"]["vllm"]
    assert set(vllm) <= {"build", "image", "command", "environment", "volumes", "deploy"}, set(vllm)
    assert vllm["deploy"] == {}  # `!reset {}`: the GPU reservation of docker-compose.yml is dropped
    assert "!reset" in (REPO / "docker" / "docker-compose.cpu.yml").read_text()
    base = stack()["vllm"][1]
    assert base["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]  # the GPU file
    assert vllm["image"] != base["image"] and re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+", vllm["image"])
    assert re.fullmatch(r".+:v\d+\.\d+\.\d+", vllm["build"]["args"]["VLLM_IMAGE"])
    assert any(target.startswith("/models/model") and source.startswith("${VLLM_MODEL_DIR:?")
               for source, target in (v.rsplit(":", 2)[:2] for v in vllm["volumes"]))
    assert vllm["command"][0] == "/models/model"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_image_makes_its_log_files_readable_by_host_users(dockerfile: Path) -> None:
    assert ("ENV", "MLOPS_LOG_FILE_MODE=0644") in [(k, rest.strip()) for k, rest in instructions(dockerfile)]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates_against_the_compose_specification(path: Path) -> None:
    errors = sorted(jsonschema.Draft7Validator(COMPOSE_SCHEMA).iter_errors(_load(path)), key=str)
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_the_schema_check_catches_a_misspelt_key_and_a_wrong_type() -> None:
    broken = copy.deepcopy(_load(STACK))
    broken["services"]["vllm"]["healthchek"] = broken["services"]["vllm"].pop("healthcheck")
    broken["services"]["fastapi"]["ports"] = "8080:8080"
    messages = [e.message for e in jsonschema.Draft7Validator(COMPOSE_SCHEMA).iter_errors(broken)]
    assert any("healthchek" in m for m in messages) and any("is not of type 'array'" in m for m in messages), messages


def test_the_stack_has_every_service_of_the_product() -> None:
    assert set(stack()) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_mounts_its_own_log_dir_at_logs_and_sets_mlops_log_dir(name: str) -> None:
    path, service = stack()[name]
    logs = [(source, target) for source, target in _binds(service) if target == "/logs"]
    assert logs == [(f"../logs/{name}", "/logs")], f"{path.name}: {name} mounts {_binds(service)}"
    assert (path.parent / logs[0][0]).resolve() == REPO / "logs" / name  # from the compose file: the repo's logs/
    assert _environment(service).get("MLOPS_LOG_DIR") == "/logs"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_a_healthcheck_and_a_restart_policy(name: str) -> None:
    _path, service = stack()[name]
    check = service.get("healthcheck", {})
    assert not check.get("disable") and check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), check
    assert RESTART.fullmatch(str(service.get("restart", ""))), service.get("restart")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_image_is_pinned_and_built_from_pinned_bases(name: str) -> None:
    path, service = stack()[name]
    image = service.get("image", "")
    assert _pinned(image), f"{name}: image {image!r} has no tag (or is 'latest')"
    if "build" in service:
        context = (path.parent / service["build"]["context"]).resolve()
        dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), dockerfile
        for base in dockerfile_bases(dockerfile):
            assert _pinned(base), f"{dockerfile.relative_to(REPO)}: FROM {base!r} is not pinned"
        for source in dockerfile_sources(dockerfile):
            assert (context / source).exists(), f"{dockerfile.relative_to(REPO)} copies {source}, missing"
            assert not _docker_ignored(context, source), f"{source} is excluded by .dockerignore"


def test_jobs_run_once_under_a_profile_and_servers_stay_up() -> None:
    for name in ("training", "inference"):
        assert stack()[name][1].get("profiles") == ["jobs"] and stack()[name][1]["restart"] == "no"
    for name in SERVICES - {"training", "inference"}:
        assert "profiles" not in stack()[name][1] and stack()[name][1]["restart"] in ("always", "unless-stopped")


def test_the_wrapped_servers_keep_their_images_entrypoint() -> None:
    for name in WRAPPED.values():
        assert "entrypoint" not in stack()[name][1], f"{name} overrides the entrypoint: logwrap would not run"


def test_the_gateway_runs_under_gunicorn_with_the_mlops_config() -> None:
    command = stack()["fastapi"][1]["command"]
    assert command[:3] == ["gunicorn", "-c", "python:mlops_logging.gunicorn_conf"] and command[-1] == "app:app"
    assert stack()["system"][1]["command"] == ["python", "-m", "mlops_logging.system"]


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def _docker_ignored(context: Path, source: str) -> bool:
    ignore = context / ".dockerignore"
    if not ignore.is_file():
        return False
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    first = PurePosixPath(source).parts[0]
    return any(PurePosixPath(source).match(p) or first == p.rstrip("/") for p in patterns)


# --- Dockerfiles ----------------------------------------------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def dockerfile_bases(dockerfile: Path) -> list[str]:
    """Each FROM's image, with ``${ARG}`` replaced by the ARG's default."""
    args: dict[str, str] = {}
    bases = []
    for keyword, rest in instructions(dockerfile):
        if keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            args[key] = value.strip('"')
        elif keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), rest.split()[0])
            bases.append(image)
    return bases


def _copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    copies = []
    for keyword, rest in instructions(dockerfile):
        if keyword in ("COPY", "ADD"):
            words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            words = [w for w in words if not w.startswith("--")]
            copies.append((words[:-1], words[-1]))
    return copies


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """The build-context paths the Dockerfile copies."""
    return [source for sources, _dest in _copies(dockerfile) for source in sources]


def entrypoint_script(dockerfile: Path) -> Path:
    """The repository file the image's ENTRYPOINT runs: the exec-form path mapped back through the COPY lines."""
    [entrypoint] = [json.loads(rest) for keyword, rest in instructions(dockerfile) if keyword == "ENTRYPOINT"]
    target = PurePosixPath(entrypoint[0])
    for sources, dest in _copies(dockerfile):
        for source in sources:
            copied_to = PurePosixPath(dest) / PurePosixPath(source).name if dest.endswith("/") else PurePosixPath(dest)
            if copied_to == target:
                return REPO / source
    raise AssertionError(f"{dockerfile.relative_to(REPO)}: ENTRYPOINT {entrypoint} is not a file it copies")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_passes_hadolint_with_no_error(dockerfile: Path) -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--format", "json", "--no-fail", str(dockerfile)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout or "[]")
    assert not [f for f in findings if f["level"] == "error"], findings


def test_hadolint_reports_an_error_when_there_is_one(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11.14-slim-trixie\nRUN cd /tmp && sudo make\nCOPY a b c\n")
    findings = json.loads(subprocess.run([str(BIN / "hadolint"), "--format", "json", "--no-fail", str(bad)],
                                         capture_output=True, text=True, check=False).stdout)
    assert {f["code"] for f in findings if f["level"] == "error"} >= {"DL3021"}, findings


@pytest.mark.parametrize("dockerfile", sorted(WRAPPED), ids=lambda p: str(p.relative_to(REPO)))
def test_wrapped_servers_entrypoint_is_a_script_that_execs_logwrap(dockerfile: Path) -> None:
    script = entrypoint_script(dockerfile)
    assert script.parent == REPO / "entrypoints" and os.access(script, os.X_OK), script
    assert script.read_text().startswith("#!/bin/sh\n")
    command = shlex.split(_last_command(script))
    assert command[:2] == ["exec", "${LOGWRAP:-logwrap}"], command
    assert command[command.index("--service") + 1] == WRAPPED[dockerfile] and "--subreaper" in command
    # everything the script needs beside it is copied beside it
    copied = {Path(s).name for s in dockerfile_sources(dockerfile) if s.startswith("entrypoints/")}
    assert copied >= {script.name, *re.findall(r'"\$here/([\w.]+)"', script.read_text())}, copied


def _last_command(script: Path) -> str:
    """The script's last command, continuation lines joined."""
    lines = [line for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    command = lines[-1]
    for line in reversed(lines[:-1]):
        if not line.rstrip().endswith("\\"):
            break
        command = line.rstrip()[:-1] + " " + command
    return command


# --- entrypoint scripts -----------------------------------------------------------------------------------------


def test_the_entrypoint_scripts_are_posix_sh_and_pass_shellcheck() -> None:
    assert {p.name for p in ENTRYPOINT_SCRIPTS} == {"vllm.sh", "mlflow.sh"}
    result = subprocess.run([str(BIN / "shellcheck"), "--shell=sh", "--severity=style",
                             *map(str, ENTRYPOINT_SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_finds_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/sh\nexec $LOGWRAP -- $@\n')
    result = subprocess.run([str(BIN / "shellcheck"), "--shell=sh", str(bad)], capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0 and "SC2068" in result.stdout, result.stdout
