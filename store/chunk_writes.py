"""The write half of the zero-copy path: one-sample chunks written straight to their files on a local store.

Why: zarr-python's per-chunk write pipeline (an asyncio round trip, a buffer copy and a fill-value scan per chunk)
cost ~0.4 ms of CPU per chunk here -- 1.1 s of CPU for one block of 8 layers × 256 images, where the same files
written directly take 0.25 s (bench/p1_p2_extraction.py; measured in the i23 work). On 2 cores that CPU is taken
from the forward pass, and on a GPU machine it is what bounds the extraction rate.

The bytes are exactly what zarr writes for the layout :func:`store.fastpath._direct_base` accepts (``bytes`` codec,
little-endian, no compressor, no shard, local file system): the row's C-order bytes, written to a temporary file and
renamed over the chunk, as zarr's ``LocalStore`` does, so a reader never sees half a chunk. One deliberate
difference: zarr skips a chunk that is all fill value (scanning every chunk to find out); here every *valid* row gets
its file (a valid image whose feature map is all zero stays present, as the reader's damage check expects), and only
a row that is not valid and all zero (an unreadable image) has its chunk removed, reading back as the fill value as
zarr would leave it. Every other layout goes through zarr unchanged.
"""
from __future__ import annotations

import os
import uuid

import numpy as np
import zarr
from numcodecs import Zstd

from declip.store.fastpath import _direct_base

#: Chunk keys of new feature arrays: ``c.ROW.0.0.0``, every sample's file in the array's own folder. zarr's default
#: (``c/ROW/0/0/0``) makes three nested folders per sample, and creating them cost more than writing the sample's
#: bytes (3 of 4 file-system creations per chunk; ~20 of 40 ms per image for 24 float16 ViT-L/14 layers, measured).
#: The encoding is in each array's metadata, so arrays written before keep their nested keys and read as before.
FLAT_CHUNK_KEYS = {"name": "default", "separator": "."}


def write_rows(array: zarr.Array, start: int, rows: np.ndarray, valid: np.ndarray | None = None) -> None:
    """``array[start:start + len(rows)] = rows``, through the chunk files directly when the layout allows.

    ``valid`` (bool per row, default all): a row marked invalid whose values are all zero has its chunk removed.
    """
    base = _direct_base(array)
    if base is None or np.dtype(rows.dtype) != np.dtype(array.dtype) or array.fill_value != 0:
        array[start:start + len(rows)] = rows
        return
    rows = np.ascontiguousarray(rows)
    valid = np.ones(len(rows), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    tail = (0,) * (rows.ndim - 1)
    made: set[str] = set()
    for i in range(len(rows)):
        path = os.path.join(base, array.metadata.encode_chunk_key((start + i,) + tail))
        if not valid[i] and not rows[i].any():  # an unreadable image's zeroed row: no chunk, as zarr leaves it
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            continue
        folder = os.path.dirname(path)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        _atomic_put(path, memoryview(rows[i]).cast("B"))


def write_chunk(array: zarr.Array, start: int, values: np.ndarray) -> None:
    """``array[start:start + len(values)] = values`` for a range that is one whole chunk along the first axis (a block's
    class tokens, scales, valid flags, checksums), written to the chunk's file directly when the layout allows.

    Why: zarr's write of even a tiny chunk is an asyncio round trip and a codec pipeline (~2 ms of CPU here), and a
    block writes five of them per layer besides its rows. The last chunk of an array may be short; it is padded with
    the fill value, as zarr stores edge chunks. A zstd-compressed array (the done flags: their frame check is what
    catches a damaged flag) gets the frame zarr's own codec makes, by the same numcodecs call with the array's level
    and checksum setting (tests compare the bytes with zarr's own write). Any other range or layout goes through zarr.
    """
    base = _direct_base(array, any_rows=True, zstd=True) if isinstance(array, zarr.Array) else None
    rows = int(array.metadata.chunks[0]) if base is not None else 0
    if base is None or start % rows or len(values) != min(rows, array.shape[0] - start) or array.fill_value is None:
        array[start:start + len(values)] = values
        return
    chunk = np.ascontiguousarray(values, dtype=array.dtype)
    if len(chunk) < rows:  # the array's short last chunk
        chunk = np.concatenate([chunk, np.full((rows - len(chunk), *array.shape[1:]), array.fill_value, array.dtype)])
    path = os.path.join(base, array.metadata.encode_chunk_key((start // rows,) + (0,) * (array.ndim - 1)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    payload = memoryview(chunk).cast("B")  # contiguous: made so above (or by the padding's concatenate)
    codecs = array.metadata.codecs
    if len(codecs) == 2:  # bytes, then zstd (the only pair _direct_base accepts)
        payload = memoryview(Zstd(level=codecs[1].level, checksum=codecs[1].checksum).encode(payload))
    _atomic_put(path, payload)


def _atomic_put(path: str, data: memoryview) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view, written = data, 0
        while written < len(data):
            written += os.write(fd, view[written:])
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
