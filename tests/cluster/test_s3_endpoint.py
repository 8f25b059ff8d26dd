"""The local S3 endpoint: a zarr v3 group and array written at s3://bucket/x.zarr through zarr's FsspecStore (s3fs)
are objects on the moto server and read back through a new store."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.cluster]


def test_zarr_v3_group_and_array_round_trip_through_s3(s3_endpoint, s3_bucket):
    import zarr
    from zarr.storage import FsspecStore

    url = f"s3://{s3_bucket}/x.zarr"
    data = np.random.default_rng(0).standard_normal((10, 7)).astype(np.float32)
    store = FsspecStore.from_url(url, storage_options=s3_endpoint.storage_options, read_only=False)
    root = zarr.create_group(store, zarr_format=3, attributes={"dataset": "tiny"})
    root.create_array("feats", shape=data.shape, chunks=(4, 7), dtype="float32")[:] = data

    # Oracle without s3fs or zarr: the objects on the endpoint, listed and read through boto3.
    client = s3_endpoint.boto3_client()
    keys = {obj["Key"] for obj in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert keys == {"x.zarr/zarr.json", "x.zarr/feats/zarr.json",
                    "x.zarr/feats/c/0/0", "x.zarr/feats/c/1/0", "x.zarr/feats/c/2/0"}
    meta = json.loads(client.get_object(Bucket=s3_bucket, Key="x.zarr/zarr.json")["Body"].read())
    assert (meta["zarr_format"], meta["node_type"], meta["attributes"]) == (3, "group", {"dataset": "tiny"})

    # A new store on a new (uncached) filesystem reads back what was written.
    fresh = FsspecStore.from_url(url, storage_options={**s3_endpoint.storage_options, "skip_instance_cache": True},
                                 read_only=True)
    group = zarr.open_group(fresh, mode="r")
    assert group.metadata.zarr_format == 3
    assert dict(group.attrs) == {"dataset": "tiny"}
    np.testing.assert_array_equal(group["feats"][:], data)


def test_s3fs_and_boto3_see_the_same_objects(s3_endpoint, s3_bucket):
    fs, client = s3_endpoint.filesystem(), s3_endpoint.boto3_client()
    fs.pipe(f"{s3_bucket}/from-s3fs.txt", b"hello")
    assert client.get_object(Bucket=s3_bucket, Key="from-s3fs.txt")["Body"].read() == b"hello"
    client.put_object(Bucket=s3_bucket, Key="dir/from-boto3.txt", Body=b"world")
    assert fs.cat(f"{s3_bucket}/dir/from-boto3.txt") == b"world"
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{s3_bucket}/missing.txt")
