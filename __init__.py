"""declip: DeCLIP deepfake localization on frozen CLIP features cached once in a zarr store.

The repository's top-level folders are installed under this one namespace (``declip.core``, ``declip.features``,
``declip.store``, ``declip.decoders``, ``declip.pipeline``, ``declip.flows``, ``declip.cli``), so a research repository
with its own ``features.py`` or ``pipeline/`` never shadows them. Floors, bottom to top: core < features < store,
decoders < pipeline (data, metrics < extract, evaluate < infer, report < train < grid) < flows < cli; a module
imports only from floors below it (``tests/test_layering.py``).
"""
