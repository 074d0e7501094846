"""The system sampler as a real process: records on disk every interval, per-process RSS, no-GPU record, SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mlops_logging.system import GpuReader
from mlops_logging.testing import read_records
from support.procs import wait_for

pytestmark = pytest.mark.timeout(120)


def samples(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [r for r in read_records(path) if r["message"] == "host sample"]


def test_the_sampler_writes_host_figures_every_interval_and_stops_cleanly_on_sigterm(log_root: Path) -> None:
    marker = f"stack-member-{uuid.uuid4().hex[:8]}"
    member = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(60)", marker])
    sampler = subprocess.Popen([sys.executable, "-m", "mlops_logging.system", "--interval", "0.2", "--processes",
                                f"{marker},no-such-process"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = log_root / "system" / "system.log"
    try:
        wait_for(lambda: len(samples(log)) >= 3, timeout=30, what="three host samples")
        sampler.send_signal(signal.SIGTERM)
        code = sampler.wait(timeout=20)
    finally:
        for proc in (sampler, member):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, sampler.stderr.read() if sampler.stderr else ""
    records = read_records(log)  # every record validated against record.schema.json
    assert {r["service"] for r in records} == {"system"}
    assert records[0]["message"] == "system sampler started" and records[0]["interval_s"] == 0.2
    assert records[-1]["message"] == "system sampler stopped" and records[-1]["signal"] == "SIGTERM"
    assert records[-2]["message"] == "host sample"  # the last sample, taken on the way out
    if not GpuReader().available:
        [no_gpu] = [r for r in records if r["message"].startswith("no GPU found")]
        assert no_gpu["level"] == "INFO" and no_gpu["gpus"] == 0
    sample = samples(log)[-1]
    assert 0 <= sample["cpu"]["percent"] <= 100 and sample["cpu"]["count"] >= 1
    assert set(sample["load"]) == {"1m", "5m", "15m"}
    assert sample["memory"]["total_bytes"] > sample["memory"]["available_bytes"] > 0
    assert sample["disk"]["/"]["total_bytes"] > 0 and "read_bytes_per_s" in sample["disk"]
    assert {"sent_bytes_per_s", "recv_bytes_per_s", "errors", "drops"} <= set(sample["net"])
    [proc] = sample["processes"]
    assert proc["match"] == marker and proc["pid"] == member.pid and proc["rss_bytes"] > 1_000_000
    assert sample["process_rss_bytes"] == {marker: proc["rss_bytes"], "no-such-process": 0}


def test_a_bad_interval_fails_at_start_with_one_line_and_exit_2(log_root: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mlops_logging.system", "--interval", "often"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--interval='often' is not a number of seconds" in result.stderr
    result = subprocess.run([sys.executable, "-m", "mlops_logging.system"], capture_output=True, text=True,
                            timeout=60, env={"MLOPS_SYSTEM_INTERVAL": "0", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "MLOPS_SYSTEM_INTERVAL='0' must be more than 0 seconds" in result.stderr
    assert not (log_root / "system").exists()


def test_count_stops_after_that_many_samples(log_root: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mlops_logging.system", "--interval", "0.1", "--count", "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    records = read_records(log_root / "system" / "system.log")
    assert len(samples(log_root / "system" / "system.log")) == 2 and records[-1]["signal"] is None


def test_without_nvml_the_gpu_reader_says_why_instead_of_failing() -> None:
    reader = GpuReader()
    if reader.available:
        pytest.skip("this host has an NVIDIA GPU: the reader reads it (checked by the sampler test)")
    assert reader.reason and reader.read() == [] and reader.count == 0
