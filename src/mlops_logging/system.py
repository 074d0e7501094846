"""The ``system`` service: a host metrics sampler writing one record every N seconds to ``logs/system/system.log``.

    python -m mlops_logging.system [--interval 10] [--processes vllm,mlflow,gunicorn,uvicorn] [--count N]

Each ``host sample`` record has ``cpu`` (percent since the last sample, per-core count), ``load`` (1/5/15 min),
``memory`` and ``swap`` (bytes, percent), ``disk`` (usage of each ``--disk`` path, and read/write bytes per second),
``net`` (bytes and packets per second, errors and drops since the last sample), ``processes`` (with
``--processes``: RSS and CPU of every process whose name or command line contains one of the patterns, its command
line with secrets redacted as logwrap does, and the total per pattern) and ``gpus`` (per GPU utilisation and memory
through NVML, when ``nvidia-ml-py`` finds one; when it does not, one INFO record at start says why). SIGTERM or
SIGINT: a last sample, a ``system sampler stopped`` record, exit 0. Needs ``psutil`` (``pip install
'mlops-logging[system]'``, which also brings ``nvidia-ml-py``).

Settings: ``--interval`` / ``MLOPS_SYSTEM_INTERVAL`` (seconds, default 10), ``--processes`` /
``MLOPS_SYSTEM_PROCESSES``, ``--disk`` / ``MLOPS_SYSTEM_DISKS`` (comma-separated paths, default ``/``), plus the
``MLOPS_LOG_*`` variables of ``configure_logging``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import LogSetupError
from ._redaction import redact_argv

__all__ = ["GpuReader", "Sampler", "main"]

_DEFAULT_INTERVAL = 10.0
#: At most this many processes are listed per sample (largest RSS first); the per-pattern totals count all.
_MAX_PROCESSES = 50


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        raise LogSetupError("the system sampler needs psutil: pip install 'mlops-logging[system]'") from None
    return psutil


class GpuReader:
    """Per-GPU utilisation and memory through NVML (``nvidia-ml-py``); ``available`` is False with a ``reason``."""

    def __init__(self) -> None:
        self.available = False
        self.reason = ""
        self.count = 0
        self._nvml: Any = None
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install 'mlops-logging[system]')"
            return
        try:
            pynvml.nvmlInit()
            self.count = int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as exc:
            self.reason = f"NVML could not start: {exc} (no NVIDIA driver or GPU on this host)"
            return
        if self.count == 0:
            self.reason = "NVML found no GPU"
            pynvml.nvmlShutdown()
            return
        self._nvml = pynvml
        self.available = True

    def read(self) -> list[dict[str, Any]]:
        """One dict per GPU; a GPU that fails to answer gets an ``error`` instead of figures."""
        nvml = self._nvml
        if nvml is None:
            return []
        gpus = []
        for index in range(self.count):
            gpu: dict[str, Any] = {"index": index}
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name = nvml.nvmlDeviceGetName(handle)
                gpu["name"] = name.decode() if isinstance(name, bytes) else str(name)
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpu.update(utilization_percent=util.gpu, memory_utilization_percent=util.memory,
                           memory_used_bytes=mem.used, memory_total_bytes=mem.total)
                try:
                    gpu["temperature_c"] = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                except nvml.NVMLError:
                    pass
            except nvml.NVMLError as exc:
                gpu["error"] = str(exc)
            gpus.append(gpu)
        return gpus

    def close(self) -> None:
        """Shut NVML down."""
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass
            self._nvml = None


@dataclass
class Sampler:
    """Reads the host figures; rates are over the time since the previous :meth:`sample`."""

    processes: Sequence[str] = ()
    disks: Sequence[str] = ("/",)
    gpu: GpuReader | None = None
    _psutil: Any = field(default=None, repr=False)
    _last: float = 0.0
    _net: Any = None
    _io: Any = None
    _procs: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._psutil = _psutil()
        self._psutil.cpu_percent(interval=None)  # primes the counter: the first sample covers the time since now
        self._last = time.monotonic()
        self._net = self._net_counters()
        self._io = self._disk_counters()

    def _net_counters(self) -> Any:
        try:
            return self._psutil.net_io_counters()
        except (OSError, RuntimeError):
            return None

    def _disk_counters(self) -> Any:
        try:
            return self._psutil.disk_io_counters()
        except (OSError, RuntimeError):
            return None

    def sample(self) -> dict[str, Any]:
        """One record's fields."""
        ps = self._psutil
        now = time.monotonic()
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        fields: dict[str, Any] = {"interval_s": round(elapsed, 3)}
        fields["cpu"] = {"percent": ps.cpu_percent(interval=None), "count": ps.cpu_count()}
        try:
            load = os.getloadavg()
            fields["load"] = {"1m": round(load[0], 2), "5m": round(load[1], 2), "15m": round(load[2], 2)}
        except OSError:
            pass
        mem = ps.virtual_memory()
        fields["memory"] = {"total_bytes": mem.total, "available_bytes": mem.available, "used_bytes": mem.used,
                            "percent": mem.percent}
        swap = ps.swap_memory()
        fields["swap"] = {"total_bytes": swap.total, "used_bytes": swap.used, "percent": swap.percent}
        fields["disk"] = self._disk(elapsed)
        fields["net"] = self._network(elapsed)
        if self.processes:
            fields["processes"], fields["process_rss_bytes"] = self._stack()
        if self.gpu is not None and self.gpu.available:
            fields["gpus"] = self.gpu.read()
        return fields

    def _disk(self, elapsed: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path in self.disks:
            try:
                usage = self._psutil.disk_usage(path)
            except OSError as exc:
                out[path] = {"error": str(exc)}
                continue
            out[path] = {"total_bytes": usage.total, "used_bytes": usage.used, "free_bytes": usage.free,
                         "percent": usage.percent}
        io = self._disk_counters()
        if io is not None and self._io is not None:
            out["read_bytes_per_s"] = round((io.read_bytes - self._io.read_bytes) / elapsed)
            out["write_bytes_per_s"] = round((io.write_bytes - self._io.write_bytes) / elapsed)
        self._io = io
        return out

    def _network(self, elapsed: float) -> dict[str, Any]:
        net = self._net_counters()
        prev, self._net = self._net, net
        if net is None or prev is None:
            return {}
        return {
            "sent_bytes_per_s": round((net.bytes_sent - prev.bytes_sent) / elapsed),
            "recv_bytes_per_s": round((net.bytes_recv - prev.bytes_recv) / elapsed),
            "sent_packets_per_s": round((net.packets_sent - prev.packets_sent) / elapsed, 1),
            "recv_packets_per_s": round((net.packets_recv - prev.packets_recv) / elapsed, 1),
            "errors": (net.errin - prev.errin) + (net.errout - prev.errout),
            "drops": (net.dropin - prev.dropin) + (net.dropout - prev.dropout),
        }

    def _stack(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Processes matching a pattern (name or command line contains it), largest RSS first; totals per pattern."""
        ps = self._psutil
        me = os.getpid()
        found: list[dict[str, Any]] = []
        totals = dict.fromkeys(self.processes, 0)
        seen: dict[int, Any] = {}
        for proc in ps.process_iter(["pid", "name", "cmdline"]):
            info = proc.info
            if info["pid"] == me:
                continue
            argv = info.get("cmdline") or []
            cmdline = " ".join(argv)
            name = info.get("name") or ""
            pattern = next((p for p in self.processes if p in name or p in cmdline), None)
            if pattern is None:
                continue
            cached = self._procs.get(info["pid"], proc)  # the same Process object, so cpu_percent has a baseline
            try:
                with cached.oneshot():
                    rss = cached.memory_info().rss
                    cpu = cached.cpu_percent(interval=None)
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                continue
            seen[info["pid"]] = cached
            totals[pattern] += rss
            found.append({"match": pattern, "pid": info["pid"], "name": name, "rss_bytes": rss,
                          "cpu_percent": cpu, "cmdline": " ".join(redact_argv(argv))[:200]})
        self._procs = seen
        found.sort(key=lambda p: -p["rss_bytes"])
        return found[:_MAX_PROCESSES], totals


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _parse_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> argparse.Namespace:
    """Command line over ``MLOPS_SYSTEM_*`` over the defaults; exit 2 with one line for a bad value."""
    parser = argparse.ArgumentParser(prog="python -m mlops_logging.system", description=__doc__.splitlines()[0])
    parser.add_argument("--interval", help=f"seconds between samples (MLOPS_SYSTEM_INTERVAL, default "
                                           f"{_DEFAULT_INTERVAL:g})")
    parser.add_argument("--processes", help="comma-separated name/command-line patterns whose processes' RSS is "
                                            "recorded (MLOPS_SYSTEM_PROCESSES), e.g. vllm,mlflow,gunicorn,uvicorn")
    parser.add_argument("--disk", action="append", help="a path whose file system usage is recorded "
                                                        "(MLOPS_SYSTEM_DISKS, default /)")
    parser.add_argument("--count", type=int, help="stop after this many samples (default: run until TERM)")
    parser.add_argument("--log-dir", help="log directory (default: MLOPS_LOG_DIR, else $MLOPS_LOG_ROOT/system)")
    args = parser.parse_args(argv)
    raw = args.interval if args.interval is not None else env.get("MLOPS_SYSTEM_INTERVAL", str(_DEFAULT_INTERVAL))
    source = "--interval" if args.interval is not None else "MLOPS_SYSTEM_INTERVAL"
    try:
        args.interval = float(raw)
    except ValueError:
        parser.error(f"{source}={raw!r} is not a number of seconds: use e.g. 10 or 0.5")
    if not args.interval > 0:
        parser.error(f"{source}={raw!r} must be more than 0 seconds")
    if args.count is not None and args.count < 1:
        parser.error(f"--count={args.count} must be at least 1")
    args.processes = _split(args.processes if args.processes is not None else env.get("MLOPS_SYSTEM_PROCESSES"))
    args.disk = [d for value in (args.disk or [env.get("MLOPS_SYSTEM_DISKS") or "/"]) for d in _split(value)]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Sample until SIGTERM/SIGINT (or ``--count`` samples); exit 0 after a last record."""
    from ._config import configure_logging, get_logger

    args = _parse_args(argv, os.environ)
    try:
        sampler = Sampler(processes=args.processes, disks=args.disk, gpu=GpuReader())
    except LogSetupError as exc:
        print(f"mlops_logging.system: {exc}", file=sys.stderr)
        return 2
    try:
        path = configure_logging("system", log_dir=args.log_dir)
    except LogSetupError as exc:
        print(f"mlops_logging.system: {exc}", file=sys.stderr)
        return 2
    log = get_logger("mlops_logging.system")
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    gpu = sampler.gpu
    assert gpu is not None
    log.info("system sampler started", interval_s=args.interval, processes=args.processes, disks=args.disk,
             gpus=gpu.count if gpu.available else 0, log_file=str(path))
    if not gpu.available:
        log.info(f"no GPU found: {gpu.reason}", gpus=0)
    samples = 0
    try:
        while True:
            stop.wait(args.interval)
            try:
                log.info("host sample", **sampler.sample())
            except Exception:  # noqa: BLE001 - one bad reading never stops the sampler
                log.exception("host sample failed")
            samples += 1
            if stop.is_set() or (args.count is not None and samples >= args.count):
                break
    finally:
        gpu.close()
    log.info("system sampler stopped", samples=samples, signal=received[0] if received else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
