"""What a training job does to a real MLflow server with the real client, recorded request by request; and the
regular expression of the access line MLflow's uvicorn prints for each (tests/integration and tests/containers)."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: uvicorn's access line as MLflow 3.17 prints it: method, path, status.
ACCESS = re.compile(r'INFO: +\S+ - "(\w+) (\S+) HTTP/[\d.]+" (\d{3})')


@contextmanager
def recording_requests(port: int) -> Iterator[list[tuple[str, str]]]:
    """Every HTTP request this process sends to ``port`` (http.client's putrequest: one call per request sent)."""
    sent: list[tuple[str, str]] = []
    original = http.client.HTTPConnection.putrequest

    def putrequest(self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        if self.port == port:
            sent.append((method, url))
        original(self, method, url, *args, **kwargs)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        http.client.HTTPConnection.putrequest = original  # type: ignore[method-assign]


def client_traffic(port: int, workdir: Path) -> None:
    """What a training job does with the real client: experiment, run, param, metric, artifact; and one 404."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
    experiment = client.create_experiment("containers")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "lr", "0.05")
    client.log_metric(run.info.run_id, "loss", 0.25, step=1)
    artifact = workdir / "model.txt"
    artifact.write_text("w=3.0 b=-2.0\n")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)
    assert client.get_experiment_by_name("no-such-experiment") is None  # answered 404


