"""A feature store on object storage (s3://bucket/feats.zarr on the local moto endpoint, reached through the standard
AWS environment variables, as workers on other machines would reach it): sharded extraction, training and
evaluation give the bytes and results of a local store; two extract flows started together into one S3 store end
byte-identical to one run (the store lock is an exclusively created object there)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import REPO, extract_config, grid_json, store_bytes

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.flow]


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """The endpoint and credentials as environment variables: what every thread, subprocess and worker reads."""
    env = {"AWS_ENDPOINT_URL": s3_endpoint.endpoint_url, "AWS_ACCESS_KEY_ID": s3_endpoint.KEY,
           "AWS_SECRET_ACCESS_KEY": s3_endpoint.SECRET, "AWS_DEFAULT_REGION": s3_endpoint.REGION}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _values(out) -> pd.Series:
    table = pd.read_parquet(out / "results.parquet")
    key = ["decoder", "layer", "train_set", "test_set", "split", "view", "metric"]
    return table.set_index(key)["value"].sort_index()


def test_grid_on_an_s3_store_equals_a_local_store(s3_env, s3_bucket, s3_endpoint, tiny_manifest, tmp_path,
                                                  prefect_harness):
    from declip.flows.grid import run_grid

    url = f"s3://{s3_bucket}/feats.zarr"

    def cfg(store, name):
        return grid_json(store, tmp_path / name, manifest=str(tiny_manifest), layers=("layer0", "layer1"),
                         decoders=("linear",), extract_shards=2, extract_batch_size=8, max_workers=2)

    local = run_grid(cfg(tmp_path / "local.zarr", "local"))
    s3 = run_grid(cfg(url, "s3"))
    assert s3["failed"] == [] and s3["trained"] == local["trained"] == 2
    assert store_bytes(url) == store_bytes(tmp_path / "local.zarr")
    pd.testing.assert_series_equal(_values(tmp_path / "s3"), _values(tmp_path / "local"), check_exact=True)
    # the objects are really in the bucket (an oracle that shares no code with zarr or s3fs), no lock left behind
    keys = [o["Key"] for page in s3_endpoint.boto3_client().get_paginator("list_objects_v2").paginate(
        Bucket=s3_bucket) for o in page.get("Contents", [])]
    assert "feats.zarr/datasets/dolos-celebahq/samples.parquet" in keys
    assert any(k.startswith("feats.zarr/features/") and "/feats/c." in k for k in keys)  # flat chunk keys
    assert not [k for k in keys if "/.locks/" in k]


_FLOW = """
import sys, time
from pathlib import Path
from declip.flows.runtime import prefect_defaults
prefect_defaults()
from declip.flows.extract import run_extract
from tests.fixtures import extract_config
go = Path(sys.argv[3])
Path(f"{go}.ready-{sys.argv[4]}").touch()  # imported: at the start line
while not go.exists():
    time.sleep(0.005)
run_extract(extract_config(sys.argv[1], sys.argv[2], layers="layer0,layer2", batch_size=4, shards=2).to_json())
"""


def test_two_extract_flows_started_together_into_one_s3_store(s3_env, s3_bucket, s3_endpoint, tiny_manifest,
                                                              tmp_path, prefect_harness):
    from declip.pipeline.extract.extraction import run_extraction

    single = tmp_path / "single.zarr"
    run_extraction(extract_config(tiny_manifest, single, layers="layer0,layer2", batch_size=4))
    url = f"s3://{s3_bucket}/feats.zarr"
    go = tmp_path / "go"
    env = dict(os.environ, **s3_env, PREFECT_API_URL=prefect_harness, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _FLOW, str(tiny_manifest), url, str(go), str(i)], cwd=REPO,
                              env=env, stderr=subprocess.PIPE) for i in range(2)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):  # a barrier, not a sleep
        if all(Path(f"{go}.ready-{i}").exists() for i in range(2)):
            break
        time.sleep(0.02)
    go.touch()  # both flows start their setups at the same moment
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    assert store_bytes(url) == store_bytes(single)
    keys = [o["Key"] for o in s3_endpoint.boto3_client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert not [k for k in keys if "/.locks/" in k], "a lock object outlived its holder"
