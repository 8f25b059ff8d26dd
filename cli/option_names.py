"""One canonical kebab-case name per option, and the other spellings each command also accepts.

Users arrive from DeCLIP's scripts (``--feature_layer``, ``--decoder_type``, ``--train_dataset``, ...) and from
earlier versions of this tool (``--train``, ``--test``); those spellings keep working everywhere the option exists,
and ``--help`` lists them after the canonical name. A test walks the whole parser tree against this table, so
the same option cannot drift to two names in two commands.
"""
from __future__ import annotations

ALIASES: dict[str, tuple[str, ...]] = {
    "--layers": ("--feature_layer", "--layer"),
    "--decoders": ("--decoder", "--decoder_type"),
    "--train-sets": ("--train", "--train_dataset"),
    "--test-sets": ("--test",),
    "--batch-size": ("--batch_size",),
    "--max-epochs": ("--niter", "--epochs"),
    "--patience": ("--earlystop_epoch",),
    "--ckpt": ("--checkpoint",),
    "--fully-supervised": ("--fully_supervised",),
    "--augment": ("--data-aug", "--data_aug"),
}

# Flags that set another option to a fixed value (DeCLIP's spelling of a choice): flag -> (key, value, help).
CONST_FLAGS: dict[str, tuple[str, object, str]] = {
    "--fully-supervised": ("mode", "localization", "DeCLIP's spelling of --mode localization"),
}

# Spellings that only make sense in some commands: DeCLIP's evaluation writes to ``--result_folder``; IMDLBenCo's
# ``--output_dir`` is an output folder (not ``data scan --out``, a file) and its ``--data_path`` the data, which is a
# manifest here. DeCLIP's ``--output_save_path DIR`` takes a folder: ``declip evaluate`` has it as its own option.
_OUTPUT_DIRS = ("train", "evaluate", "predict", "grid", "demo", "report", "import-checkpoint")
COMMAND_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("evaluate", "--out"): ("--result_folder", "--output_dir"),
    ("evaluate", "--save-maps-to"): ("--output_save_path",),
    **{(command, "--out"): ("--output_dir",) for command in _OUTPUT_DIRS if command != "evaluate"},
    **{(command, "--manifest"): ("--data_path",) for command in ("extract", "grid")},
}


def names(canonical: str, command: str | None = None) -> tuple[str, ...]:
    """``canonical`` followed by every alias it has (for ``parser.add_argument(*names("--layers"), ...)``)."""
    return (canonical, *ALIASES.get(canonical, ()), *COMMAND_ALIASES.get((command or "", canonical), ()))


def split_values(values: list[str] | str | None) -> list[str]:
    """A list option given repeated (``--layers a --layers b``), comma-separated (``--layers a,b``) or both."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else values
    return [v.strip() for item in items for v in item.split(",") if v.strip()]
