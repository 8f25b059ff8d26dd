"""The zarr feature store: datasets, cached layers, readers, block writer, checksums, locks, quantized storage."""
