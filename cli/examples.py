"""The examples at the end of every ``declip ... --help``: real command lines a researcher can copy.

Keyed by command path (``"data scan"``); :func:`declip.cli.help_format.apply` puts each one in its command's
epilog, and a test checks that every command has one and that each example parses.
"""
from __future__ import annotations

EXAMPLES: dict[str, str] = {
    "": """
declip data scan --layout dolos /data/dolos_data/celebahq --out dolos.parquet
declip extract --manifest dolos.parquet --store feats.zarr --backbone ViT-L-14@openai --layers layer20
declip train --store feats.zarr --dataset dolos-celebahq --source ViT-L-14@openai/layer20 --train-sets lama --out runs/lama
declip evaluate --store feats.zarr --dataset dolos-celebahq --ckpt runs/lama/best --test-sets ldm,lama --out results/lama
declip grid --example-config > grid.toml    # then edit it and: declip grid --config grid.toml --report
""",
    "data": """
declip data scan --layout dolos /data/dolos_data/celebahq --out dolos.parquet
declip data demo demo-data
""",
    "data scan": """
declip data scan --layout dolos /data/dolos_data/celebahq --out dolos.parquet
declip data scan --layout pairs /data/my-set --dataset my-set --polarity fake_is_black --out my-set.parquet --strict
""",
    "data demo": """
declip data demo demo-data --size 20
""",
    "extract": """
declip extract --manifest dolos.parquet --store feats.zarr --backbone ViT-L-14@openai --layers 0-23 --device cuda
declip extract --manifest dolos.parquet --store feats.zarr --arch CLIP:ViT-L/14,RN50 --feature_layer layer20
declip extract --manifest dolos.parquet --store feats.zarr --backbone ViT-B-32@random-0 --layers layer4,layer8
""",
    "store": """
declip store ls --store feats.zarr
declip store info ViT-L-14@openai/layer20/dolos-celebahq --store feats.zarr
""",
    "store ls": """
declip store ls --store feats.zarr
""",
    "store info": """
declip store info ViT-L-14@openai/layer20/dolos-celebahq --store feats.zarr
""",
    "store export": """
declip store export ViT-L-14@openai/layer20/dolos-celebahq --store feats.zarr --out layer20.h5
""",
    "store import": """
declip store import layer20.h5 --store other.zarr
""",
    "store rm": """
declip store rm ViT-L-14@openai/layer20/dolos-celebahq --store feats.zarr
""",
    "store verify": """
declip store verify --store feats.zarr
declip store verify --store feats.zarr --check-only
""",
    "train": """
declip train --store feats.zarr --dataset dolos-celebahq --source ViT-L-14@openai/layer20 \\
             --decoders conv-20 --train-sets lama --out runs/lama-conv20
declip train --store feats.zarr --dataset dolos-celebahq --backbone ViT-L-14@openai --layers layer8,layer20 \\
             --decoders linear,conv-4 --train-sets lama --out runs/lama-4heads   # 4 heads, one read per batch
declip train --store feats.zarr --dataset dolos-celebahq --arch CLIP:ViT-L/14 --feature_layer layer20 \\
             --decoder_type conv-20 --train_dataset lama --out runs/lama-declip-names
""",
    "evaluate": """
declip evaluate --store feats.zarr --dataset dolos-celebahq --ckpt runs/lama-conv20/best \\
                --test-sets pluralistic,lama,repaint-p2-9k,ldm --out results/lama-conv20
declip evaluate --list-metrics
""",
    "grid": """
declip grid --example-config > grid.toml          # every key, annotated
declip grid --config grid.toml --report
declip grid --config grid.toml --layers layer12,layer20 --max-workers 2    # flags override the file
declip grid --config grid.toml --task-runner dask --dask-address tcp://scheduler:8786
""",
    "report": """
declip report runs/grid/results.parquet
""",
    "compare": """
declip compare runs/grid --a ViT-L-14@openai/layer20:conv-20 --b ViT-L-14@openai/layer16:conv-20
declip compare demo-out/grid --a srm@fixed/layer0:conv-4 --b baseline:all-fake --metric iou
""",
    "predict": """
declip predict photos/ 'more/*.jpg' --ckpt runs/lama-conv20/best --out predictions
""",
    "import-checkpoint": """
declip import-checkpoint ViT_layer20_conv-20_lama.pth --out ckpt/declip-lama
""",
    "demo": """
declip demo --out demo-out
declip demo --backbone ViT-L-14@openai --out demo-vitl
""",
}
