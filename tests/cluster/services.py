"""Real services the cluster tests start themselves: a single-node SLURM (tests/cluster/slurm.sh) and a local S3
endpoint (moto's standalone server). Plain helpers, so bench scripts and, later, other test folders can use them; the
pytest fixtures that wrap them live in tests/cluster/conftest.py.

Where a machine cannot have a service (not root, no Debian mirror, moto not installed), the helpers raise
:class:`ServiceUnavailable` with the reason, which the fixtures turn into a skip — or into a failure when
``DECLIP_REQUIRE_SERVICES=1`` (CI sets it, so a cluster test that silently skips there cannot pass for green).
"""
from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SLURM_SCRIPT = Path(__file__).with_name("slurm.sh")
#: slurm.sh's exit status for "this machine cannot have the cluster" (its last stderr line says why).
SLURM_SKIP_STATUS = 77
#: Held shared by every test session that uses the cluster; the last session out (exclusive) may stop it.
SLURM_USERS_LOCK = Path("/run/lock/declip-slurm.users")


class ServiceUnavailable(RuntimeError):
    """This machine cannot provide the service; the message is the reason a test skips with."""


@dataclass(frozen=True)
class SlurmNode:
    """The running single-node cluster as SLURM itself reports it (sinfo), not as the script meant to make it."""

    partition: str
    node: str
    cpus: int
    started_here: bool
    start_line: str


def start_slurm(timeout_s: float = 540) -> SlurmNode:
    """Run ``slurm.sh start`` (installs on first use; idempotent) and describe the node; raises ServiceUnavailable.

    ``timeout_s`` stays under pytest-timeout's 600 s so a stuck install fails with this message, not a bare timeout.
    """
    try:
        proc = subprocess.run(["bash", str(SLURM_SCRIPT), "start"], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{SLURM_SCRIPT} start did not finish in {timeout_s:.0f} s") from None
    if proc.returncode == SLURM_SKIP_STATUS:
        reasons = [line for line in proc.stderr.splitlines() if "skip:" in line]
        raise ServiceUnavailable(reasons[-1].split("skip:", 1)[1].strip() if reasons else proc.stderr.strip())
    if proc.returncode != 0:
        raise RuntimeError(f"{SLURM_SCRIPT} start failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    last = proc.stdout.strip().splitlines()[-1]
    # `%P` marks the default partition with '*'; the script makes its partition the default.
    rows = [r.split() for r in _run(["sinfo", "-h", "-o", "%P %n %c"]).splitlines() if r.strip()]
    default = [r for r in rows if r[0].endswith("*")] or rows
    partition, node, cpus = default[0]
    return SlurmNode(partition.rstrip("*"), node, int(cpus), last.startswith("started"), last)


def stop_slurm() -> None:
    subprocess.run(["bash", str(SLURM_SCRIPT), "stop"], check=True, capture_output=True, timeout=120)


class SlurmUsers:
    """A shared flock held while a test session uses the cluster, so one session never stops it under another.

    A session that started the cluster stops it at its end only if it can then take the lock exclusively (no other
    session is using it) and ``DECLIP_SLURM_KEEP`` is not set; otherwise the idle daemons are left for the next one.
    """

    def __init__(self) -> None:
        try:
            SLURM_USERS_LOCK.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(SLURM_USERS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            self._fd = None  # not root: we cannot start or stop it anyway
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self, stop: bool) -> None:
        if self._fd is None:
            return
        try:
            if stop and not os.environ.get("DECLIP_SLURM_KEEP"):
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
                stop_slurm()
        finally:
            os.close(self._fd)
            self._fd = None


def slurm_cluster_kwargs(node: SlurmNode, log_dir: Path, job_name: str, memory: str = "2GiB") -> dict:
    """``dask_jobqueue.SLURMCluster`` keyword arguments for one-core worker jobs on the test node.

    ``interface="lo"``: by default the scheduler and workers advertise the address the host name resolves to, which
    on a fresh CI machine or in a container may be missing or unreachable; the single-node cluster is all on
    loopback. ``dashboard_address=":0"``: two test sessions on one machine must not fight over port 8787.
    """
    return dict(cores=1, processes=1, memory=memory, walltime="00:30:00", queue=node.partition, interface="lo",
                job_name=job_name, log_directory=str(log_dir), scheduler_options={"dashboard_address": ":0"})


def slurm_cluster_table(node: SlurmNode, log_dir: Path, job_name: str, jobs: int = 2, memory: str = "2GB") -> dict:
    """The grid's ``[cluster]`` table for one-core worker jobs on the test node (see :func:`slurm_cluster_kwargs` for
    why loopback)."""
    return {"partition": node.partition, "cores": 1, "memory": memory, "walltime": "00:30:00", "jobs": jobs,
            "interface": "lo", "job_name": job_name, "log_directory": str(log_dir)}


def squeue_job_ids(job_name: str, states: str = "RUNNING") -> set[str]:
    """Ids of this user's jobs named ``job_name`` in ``states``, as SLURM reports them."""
    out = _run(["squeue", "-h", "--me", "-n", job_name, "-t", states, "-o", "%i"])
    return {line.strip() for line in out.splitlines() if line.strip()}


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _no_proxy_for_loopback() -> None:
    # A machine with HTTP(S)_PROXY set would send botocore's and urllib's requests to 127.0.0.1 through the proxy.
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        if "127.0.0.1" not in hosts:
            os.environ[var] = ",".join(hosts + ["127.0.0.1", "localhost"])


class MotoServer:
    """moto's standalone S3 server on 127.0.0.1 in its own process (as s3fs's own tests run it), on a free port.

    ``storage_options`` is what fsspec/s3fs and zarr take: the endpoint plus dummy credentials, so nothing ever
    reaches AWS. Buckets live in the server's memory and vanish with it.
    """

    KEY, SECRET, REGION = "declip-test-key", "declip-test-secret", "us-east-1"

    def __init__(self, log_path: Path, timeout_s: float = 60) -> None:
        try:
            import moto.server  # noqa: F401
            import s3fs  # noqa: F401
        except ImportError as err:
            raise ServiceUnavailable(f"{err.name} is not installed (pip install -e '.[dev]' installs moto[server] "
                                     "and s3fs)") from None
        _no_proxy_for_loopback()
        self._log = open(log_path, "wb")
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between probing and binding it
            self.port = _free_port()
            self.endpoint_url = f"http://127.0.0.1:{self.port}"
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self._proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
            last_error = self._wait_ready(timeout_s)
            if not last_error:
                return
            self._stop_process()
        self._log.close()
        raise RuntimeError(f"moto server did not start: {last_error} (log: {log_path})")

    def _wait_ready(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return f"exited with status {self._proc.returncode}"
            try:
                with opener.open(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return ""
            except OSError:
                time.sleep(0.1)
        return f"no answer on {self.endpoint_url} after {timeout_s:.0f} s"

    @property
    def storage_options(self) -> dict:
        return {"key": self.KEY, "secret": self.SECRET, "client_kwargs": {"endpoint_url": self.endpoint_url,
                                                                           "region_name": self.REGION}}

    def filesystem(self):
        """A fresh s3fs filesystem on this endpoint (not fsspec's cached instance)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)

    def boto3_client(self):
        """A boto3 S3 client on the endpoint: an oracle that shares no code with s3fs or zarr."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.KEY,
                            aws_secret_access_key=self.SECRET, region_name=self.REGION)

    def _stop_process(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def close(self) -> None:
        self._stop_process()
        self._log.close()
