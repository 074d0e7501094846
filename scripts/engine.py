#!/usr/bin/env python3
"""The container engine, as the container suite and ``make demo-containers`` use it: Docker when a daemon answers,
else Podman (with this project's ``docker/containers.conf``); the same verbs for both.

    python scripts/engine.py which              the engine and compose command that would be used
    python scripts/engine.py bases              make sure every pinned base image is there (pull, else a stand-in)
    python scripts/engine.py demo               the six services in containers, then logcheck's verdict
    python scripts/engine.py down               stop and remove the demo's containers, if a demo was interrupted

Base images: where a registry answers, the pinned official image is pulled; where none does (this project's
machines), a *stand-in* is built under the exact pinned name from Debian packages and PyPI, from the recipe in
``docker/standins/<name>/`` (tests/containers/README.md says what a stand-in is and is not). A stand-in carries the
label ``org.mlops-logging.standin`` = a digest of its recipe, and is rebuilt only when that recipe changes; an image
without the label (a real official one) is never replaced.

Standard library only: it runs before the project's venv matters (``make setup-containers``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTAINERS_CONF = REPO / "docker" / "containers.conf"
STANDINS = REPO / "docker" / "standins"
LABEL = "org.mlops-logging.standin"
#: The pinned base images our Dockerfiles name (FROM / the build arg the CPU override sets).
PYTHON_IMAGE = "docker.io/library/python:3.11.14-slim-trixie"
MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.0"
VLLM_CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0"
#: Where the machine keeps its wheel of torch 2.13.0+cpu (pip's find-links here); the vLLM stand-in installs it.
WHEELS = Path(os.environ.get("MLOPS_WHEELS", "/opt/wheels"))
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def log(message: str) -> None:
    print(f"[engine] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Engine:
    """One container engine: its command, the environment every call gets, and its compose command."""

    name: str
    command: tuple[str, ...]
    compose_command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.env, **(extra or {})}

    def run(self, *args: str, check: bool = True, capture: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` / ``podman ARGS``; output captured as text unless ``capture`` is false."""
        return subprocess.run([*self.command, *args], env=self.environ(), check=check, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None, text=True)

    def compose(self, files: Sequence[Path], *args: str, env: Mapping[str, str] | None = None, check: bool = True,
                capture: bool = True, timeout: float | None = None,
                profiles: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """``docker compose -f F... ARGS`` / ``podman-compose -f F... ARGS``."""
        argv = [*self.compose_command]
        for path in files:
            argv += ["-f", str(path)]
        for profile in profiles:
            argv += ["--profile", profile]
        return subprocess.run([*argv, *args], env=self.environ(env), check=check, timeout=timeout, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None)

    def image_label(self, image: str) -> str | None:
        """The stand-in label of a local ``image`` ('' for an image without it); None when there is no such image."""
        done = self.run("image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', image,
                        check=False)
        if done.returncode != 0:
            return None
        value = done.stdout.strip()
        return "" if value in ("", "<no value>") else value


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _podman_compose() -> tuple[str, ...] | None:
    beside = Path(sys.executable).with_name("podman-compose")  # the project's venv (the dev extra installs it)
    if beside.exists():
        return (str(beside),)
    found = shutil.which("podman-compose")
    return (found,) if found else None


def detect() -> Engine | None:
    """Docker when its daemon answers, else Podman with this project's containers.conf; None when neither runs."""
    if os.environ.get("MLOPS_ENGINE", "") in ("", "docker") and _docker_answers():
        return Engine("docker", ("docker",), ("docker", "compose"))
    if os.environ.get("MLOPS_ENGINE", "") in ("", "podman") and shutil.which("podman"):
        compose = _podman_compose()
        if compose is None:
            return None
        conf = os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))
        # BUILDAH_FORMAT=docker: Podman builds OCI images by default, and the OCI format has no HEALTHCHECK (buildah
        # drops it, with a warning); Docker's format keeps our Dockerfiles' healthchecks in the images.
        return Engine("podman", ("podman",), compose, {"CONTAINERS_CONF": conf, "BUILDAH_FORMAT": "docker"})
    return None


def why_none() -> str:
    """Why :func:`detect` found no engine, in one line."""
    if shutil.which("podman") and _podman_compose() is None:
        return "podman is installed but podman-compose is not (pip install podman-compose)"
    return "no container engine: no Docker daemon answers and podman is not installed (make setup-containers)"


# ----------------------------------------------------------------------------------------------- base images


def _digest(paths: Sequence[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(STANDINS)).encode() + b"\0" + path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Base:
    """A pinned base image and the recipe of its stand-in (``docker/standins/<recipe>``)."""

    image: str
    recipe: str
    parent: Base | None = None

    def files(self) -> list[Path]:
        return [p for p in (STANDINS / self.recipe).rglob("*") if p.is_file() and "torch" not in p.parts]

    def digest(self) -> str:
        """The recipe's files and the parent's digest: a change anywhere below rebuilds this stand-in."""
        return _digest(self.files(), self.image, self.parent.digest() if self.parent else "")


PYTHON = Base(PYTHON_IMAGE, "python")
BASES = (PYTHON, Base(MLFLOW_IMAGE, "mlflow", PYTHON), Base(VLLM_CPU_IMAGE, "vllm-cpu", PYTHON))


def _build_python(engine: Engine, base: Base) -> None:
    """debootstrap a minimal Debian with Python (rootfs.sh), then import it under the pinned name."""
    if shutil.which("debootstrap") is None:
        raise SystemExit("[engine] building the Python stand-in needs debootstrap (make setup-containers)")
    changes = [line.strip() for line in (STANDINS / "python" / "image.changes").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    with tempfile.TemporaryDirectory(prefix="standin-python-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(["sh", str(STANDINS / "python" / "rootfs.sh"), str(rootfs)], check=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        argv = [*engine.command, "import"]
        for change in [*changes, f"LABEL {LABEL}={base.digest()}"]:
            argv += ["--change", change]
        subprocess.run([*argv, "-", base.image], stdin=tar.stdout, env=engine.environ(), check=True,
                       stdout=subprocess.DEVNULL)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("[engine] tar of the Python stand-in's rootfs failed")


def _build_from_containerfile(engine: Engine, base: Base) -> None:
    """``build`` the recipe's Containerfile, with its directory as the context (plus torch's wheel for vLLM)."""
    recipe = STANDINS / base.recipe
    with tempfile.TemporaryDirectory(prefix=f"standin-{base.recipe}-") as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(recipe, context)
        if base.image == VLLM_CPU_IMAGE:
            wheel = WHEELS / TORCH_WHEEL
            if not wheel.exists():
                raise SystemExit(f"[engine] the vLLM CPU stand-in needs {wheel} (torch 2.13.0+cpu; set MLOPS_WHEELS "
                                 "to the directory that has it)")
            (context / "torch").mkdir()
            shutil.copy2(wheel, context / "torch" / TORCH_WHEEL)
        engine.run("build", "--label", f"{LABEL}={base.digest()}", "-f", str(context / "Containerfile"),
                   "-t", base.image, str(context), capture=False)


def ensure_base(engine: Engine, base: Base) -> str:
    """Make ``base.image`` present; say how: ``official`` (there, unlabelled), ``pulled``, ``standin`` (already
    built from this recipe) or ``built``."""
    label = engine.image_label(base.image)
    if label == "":
        return "official"
    if label == base.digest():
        return "standin"
    if label is None:
        done = engine.run("pull", base.image, check=False, timeout=600)
        if done.returncode == 0:
            return "pulled"
        log(f"{base.image}: no registry answers ({(done.stderr.strip().splitlines() or ['?'])[-1][:160]}); "
            "building the stand-in")
    started = time.monotonic()
    (_build_python if base.recipe == "python" else _build_from_containerfile)(engine, base)
    log(f"{base.image}: stand-in built in {time.monotonic() - started:.0f} s")
    return "built"


def ensure_bases(engine: Engine, bases: Sequence[Base] = BASES) -> dict[str, str]:
    """Every pinned base image present (parents first); what was done for each."""
    done: dict[str, str] = {}
    for base in bases:
        done[base.image] = ensure_base(engine, base)
        log(f"{base.image}: {done[base.image]}")
    return done


# ------------------------------------------------------------------------------------------- compose projects


class Project:
    """One compose project: its files, its name, the variables its files interpolate; what users and tests do."""

    def __init__(self, engine: Engine, files: Sequence[Path], name: str, env: Mapping[str, str] | None = None,
                 transcript: Path | None = None) -> None:
        self.engine = engine
        self.files = list(files)
        self.name = name
        self.env = dict(env or {})
        self.transcript = transcript

    def compose(self, *args: str, profiles: Sequence[str] = (), timeout: float = 1800, check: bool = True,
                capture: bool = True) -> subprocess.CompletedProcess[str]:
        """``compose -p NAME ARGS`` with the project's files; the output goes to the transcript too."""
        argv = ["-p", self.name, *args]
        done = self.engine.compose(self.files, *argv, env=self.env, check=False, timeout=timeout, profiles=profiles,
                                   capture=capture)
        if self.transcript is not None:
            with self.transcript.open("a") as out:
                out.write(f"$ compose {' '.join(argv)}  -> {done.returncode}\n{done.stdout or ''}\n")
        if check and done.returncode != 0:
            raise RuntimeError(f"compose {' '.join(argv)} exited {done.returncode}:\n{(done.stdout or '')[-4000:]}")
        return done

    def build(self, *services: str) -> None:
        """``compose build SERVICES``, once more if it fails: a build downloads from the package index, and one
        dropped connection should not fail a run."""
        for attempt in (1, 2):
            done = self.compose("build", *services, check=attempt == 2)
            if done.returncode == 0:
                return
            log(f"compose build failed (exit {done.returncode}); once more")

    def container(self, service: str) -> str:
        """The name of the service's container (compose labels it with its project and service)."""
        done = self.engine.run("ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}",
                               "--filter", f"label=com.docker.compose.service={service}", "--format",
                               "{{.Names}}")
        names = done.stdout.split()
        if not names:
            raise RuntimeError(f"no container of service {service} in project {self.name}")
        return names[0]

    def inspect(self, service: str, template: str) -> str:
        return self.engine.run("inspect", "--format", template, self.container(service)).stdout.strip()

    def healthcheck(self, service: str) -> bool:
        """Run the service's healthcheck now, through the engine (this host has no systemd timers to run it);
        with Docker, the daemon runs it: its last verdict."""
        if self.engine.name == "podman":
            return self.engine.run("healthcheck", "run", self.container(service), check=False).returncode == 0
        return self.inspect(service, "{{.State.Health.Status}}") == "healthy"

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> float:
        """Poll ``condition`` every 0.5 s; the seconds it took (RuntimeError after ``timeout``)."""
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.5)
        return time.monotonic() - started

    def wait_healthy(self, service: str, timeout: float) -> float:
        return self.wait_until(f"{service} healthy", lambda: self.healthcheck(service), timeout)

    def down(self) -> None:
        """Remove the project's containers, networks and volumes (the logs on the host stay)."""
        self.compose("down", "-v", "-t", "60", check=False)


# ------------------------------------------------------------------------------------------------------ demo

COMPOSE = REPO / "docker" / "docker-compose.yml"
COMPOSE_CPU = REPO / "docker" / "docker-compose.cpu.yml"
#: The servers of docker-compose.yml, in the order they become healthy, with how long each may take.
SERVERS = (("mlflow", 120), ("vllm", 600), ("fastapi", 120), ("system", 120))


def _logcheck(*args: str) -> int:
    """logcheck over the repository's logs/ (the table and verdict go to the terminal); its exit status."""
    return subprocess.run([sys.executable, "-m", "mlops_logging.check", "--root", str(REPO / "logs"), *args],
                          cwd=REPO).returncode


def _last_item(path: Path) -> str | None:
    """The request id of the inference job's last answered item (what ``--trace`` follows)."""
    ids = [record.get("request_id") for line in path.read_text().splitlines()
           if (record := json.loads(line)).get("message") == "completion received"] if path.exists() else []
    return ids[-1] if ids else None


def demo(engine: Engine) -> int:
    """The whole stack (CPU override, the tiny local model) up, the jobs run, one item traced across containers,
    then ``down`` and logcheck's verdict over the host's ``logs/``."""
    from vllm_server import ensure_tiny_model  # beside this file; needs the vLLM venv (make setup-vllm)

    ensure_bases(engine)
    project = Project(engine, (COMPOSE, COMPOSE_CPU), "mlops-logging", {"VLLM_MODEL_DIR": str(ensure_tiny_model())})
    try:
        project.build("vllm", "mlflow", "fastapi")  # one build per image
        project.compose("up", "-d", capture=False)
        for service, timeout in SERVERS:
            log(f"{service}: healthy after {project.wait_healthy(service, timeout):.0f} s")
        project.compose("up", "--no-deps", "training", "inference", profiles=("jobs",), capture=False)
        item = _last_item(REPO / "logs" / "inference" / "inference.log")
        if item:
            log(f"logcheck --trace {item}: one item through inference -> fastapi -> vllm, three containers")
            _logcheck("--trace", item)
    finally:
        log("compose down (the logs stay in logs/)")
        project.down()
    return _logcheck()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("verb", choices=("which", "bases", "demo", "down"))
    args = parser.parse_args(argv)
    engine = detect()
    if engine is None:
        print(f"engine.py: {why_none()}", file=sys.stderr)
        return 2
    if args.verb == "which":
        print(engine.name, " ".join(engine.compose_command))
        return 0
    if args.verb == "bases":
        ensure_bases(engine)
        return 0
    if args.verb == "down":
        Project(engine, (COMPOSE, COMPOSE_CPU), "mlops-logging", {"VLLM_MODEL_DIR": "/nonexistent"}).down()
        return 0
    return demo(engine)


if __name__ == "__main__":
    sys.exit(main())
