"""Fixtures for the real services: a single-node SLURM cluster and a local S3 endpoint, each started once per session.

``DECLIP_NO_SLURM=1`` skips the SLURM tests; ``DECLIP_REQUIRE_SERVICES=1`` (set by CI) turns "cannot start here"
into a failure instead of a skip; ``DECLIP_SLURM_KEEP=1`` leaves the daemons running after the session.
"""
from __future__ import annotations

import os
import uuid

import pytest

from tests.cluster.services import MotoServer, ServiceUnavailable, SlurmUsers, start_slurm


def _unavailable(service: str, reason: str):
    message = f"{service} unavailable: {reason}"
    if os.environ.get("DECLIP_REQUIRE_SERVICES"):
        pytest.fail(f"{message} (DECLIP_REQUIRE_SERVICES is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm():
    """The running single-node SLURM cluster (a :class:`SlurmNode`); installs and starts it as root if needed."""
    if os.environ.get("DECLIP_NO_SLURM"):
        _unavailable("SLURM", "DECLIP_NO_SLURM is set")
    users = SlurmUsers()
    try:
        node = start_slurm()
    except ServiceUnavailable as err:
        users.release(stop=False)
        _unavailable("SLURM", str(err))
    except BaseException:
        users.release(stop=False)
        raise
    try:
        yield node
    finally:
        users.release(stop=node.started_here)


@pytest.fixture
def slurm_job_name(slurm):
    """A job name no other test or session uses; any job still queued under it is cancelled afterwards."""
    import subprocess

    name = f"declip-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["scancel", "--me", "-n", name], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (a :class:`MotoServer`; ``.storage_options`` for s3fs, fsspec and zarr)."""
    try:
        server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    except ServiceUnavailable as err:
        _unavailable("local S3 endpoint", str(err))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A new empty bucket on the local endpoint; its name."""
    name = f"declip-{uuid.uuid4().hex[:12]}"
    s3_endpoint.boto3_client().create_bucket(Bucket=name)
    return name
