"""Every training option, declared once: :class:`TrainOptions`.

``declip train`` and ``declip grid`` get one flag per field (``cli/config_flags.py``), the grid TOML one key per field
(flat, as before), ``--example-config`` one annotated line per field, and a run's identity takes each field as its
``identity`` says. Adding a training option is one field here, with its help, rule and identity kind; the tests fail
until all four are there.

Identity kinds (how a field enters :meth:`declip.pipeline.train.config.TrainConfig.identity`):

- ``result``: always hashed; it changes what is trained.
- ``later``: hashed only when it differs from its ``neutral`` value, so runs made before the option existed keep
  their identity (and their run directory).
- ``not-result``: where or how a run is computed or shown, never what it computes.
- ``shorthand``: input sugar folded into another field before a run is built (``augment_copies``/``augment`` become
  ``train_views`` entries), so it never reaches the identity or the stored config itself.

Defaults are one per option for every command. ``device = "auto"`` is CUDA when present, else CPU, and ``width``
unset follows the device (1.0 on CUDA = DeCLIP, 0.125 on CPU where a full-width conv-20 takes minutes per epoch);
both are resolved on the machine that plans the run (:meth:`TrainOptions.on_device`), recorded in every run's
config.json, and :func:`device_note` states the CPU width deviation before training starts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from declip.core.configs import JsonConfig, option, rules_of, flags_of
from declip.core.validation import Rule, check_config, choice, number, whole
from declip.features.views import AUGMENT_KINDS
from declip.pipeline.train.precision import PRECISIONS
from declip.pipeline.train.recipe import DECLIP_TRAINING

#: What a decoder is trained for (the loss and the selection metric follow it).
MODES = ("localization", "detection")

RESULT, LATER, NOT_RESULT, SHORTHAND = "result", "later", "not-result", "shorthand"
IDENTITY_KINDS = (RESULT, LATER, NOT_RESULT, SHORTHAND)

#: Decoder width on the CPU when ``width`` is not given (DeCLIP's 512/256/128/64 conv channels → 64/32/16/8).
CPU_WIDTH = 0.125


def _is_device(text: object) -> bool:
    if text in ("auto", "cpu"):  # the defaults answered without torch: building the CLI's flags validates them
        return True
    import torch  # here, not at the top: the CLI builds its flags from this module without torch

    try:
        torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


DEVICE = Rule("choice", _is_device, "auto, cpu or cuda[:N]")

#: Headings of the annotated grid TOML (``declip grid --example-config``) the options are listed under.
RECIPE_SECTION = "training recipe (DeCLIP's by default)"
SMALL_DATA_SECTION = "small data"
VIEWS_SECTION = "views: augmentation and robustness (perturbed copies of the dataset, each encoded once)"
RUNS_SECTION = "where and how it runs (never part of a result)"


@dataclass(frozen=True)
class TrainOptions(JsonConfig):
    """How decoders are trained: what a grid holds fixed across its cells (what varies, and where, is
    :class:`declip.pipeline.train.config.TrainConfig`'s)."""

    WHAT = "training"

    width: float | None = option(
        None, identity=RESULT, rule=number(above=0, optional=True), metavar="X", section=RECIPE_SECTION, example=1.0,
        help="decoder channel multiplier (1.0 = DeCLIP). Unset: 1.0 on CUDA, 0.125 on the CPU, where a full-width "
             "conv-20 takes minutes per epoch (stated before training)")
    faithful: bool = option(
        False, identity=RESULT, section=RECIPE_SECTION,
        help="the attention decoder exactly as DeCLIP shipped it (causal mask, partial trainable set)")
    mode: str = option(
        "localization", identity=RESULT, rule=choice(*MODES), choices=MODES, section=RECIPE_SECTION,
        help="localization: BCE on the fake images' masks (DeCLIP's main setting); detection: real vs fake, image "
             "logit = mean pixel logit, selected on validation AP")
    lr: float = option(
        DECLIP_TRAINING.lr, identity=RESULT, rule=number(above=0), metavar="LR", section=RECIPE_SECTION,
        help="AdamW learning rate (no weight decay); divided by 10 on a validation plateau, down to min_lr")
    batch_size: int = option(
        DECLIP_TRAINING.batch_size, identity=RESULT, rule=whole(1), metavar="N", section=RECIPE_SECTION,
        help="training batch size")
    max_epochs: int = option(
        DECLIP_TRAINING.max_epochs, identity=RESULT, rule=whole(1), metavar="N", section=RECIPE_SECTION,
        help="upper bound on epochs; early stopping usually ends training first")
    patience: int = option(
        DECLIP_TRAINING.patience, identity=RESULT, rule=whole(0), metavar="N", section=RECIPE_SECTION,
        help="epochs without validation improvement before the lr drops (and, at the floor, training stops)")
    min_lr: float = option(
        DECLIP_TRAINING.min_lr, identity=RESULT, rule=number(at_least=0), metavar="LR", section=RECIPE_SECTION,
        help="training stops once a plateau would divide the lr below this")
    train_split: str = option(
        "train", identity=RESULT, metavar="SPLIT", section=RECIPE_SECTION,
        help="manifest split the decoders train on")
    valid_split: str = option(
        "valid", identity=RESULT, metavar="SPLIT", section=RECIPE_SECTION,
        help="manifest split that picks the best epoch (and drives early stopping)")
    device: str = option(
        "auto", identity=NOT_RESULT, rule=DEVICE, metavar="DEVICE", section=RUNS_SECTION,
        help="auto (CUDA when present, else CPU; resolved before the run and recorded in its config.json), cpu or "
             "cuda[:N]")
    memory_gb: float | None = option(
        None, identity=NOT_RESULT, rule=number(at_least=0, optional=True), metavar="GB", section=RUNS_SECTION,
        example=16,
        help="RAM budget for holding features in memory; beyond it batches stream from the store. Unset: half the "
             "machine's RAM")
    progress: bool = option(
        True, identity=NOT_RESULT, section=RUNS_SECTION,
        help="progress bars (train: epochs; grid: a bar over the cells with trained / evaluated / failed counts)")
    min_steps_per_epoch: int = option(
        20, identity=LATER, neutral=0, rule=whole(0), metavar="N", section=SMALL_DATA_SECTION,
        help="re-shuffle small training sets within an epoch until this many optimizer steps ran (0 = DeCLIP's "
             "single pass; no effect when one pass already has that many, e.g. on Dolos)")
    collapse_patience: int = option(
        10, identity=LATER, neutral=0, rule=whole(0), metavar="N", section=SMALL_DATA_SECTION,
        help="stop a run whose validation maps stay collapsed (near-constant) this many epochs in a row (0 = never)")
    precision: str = option(
        "fp32", identity=LATER, neutral="fp32", rule=choice(*PRECISIONS), choices=PRECISIONS, section=RUNS_SECTION,
        help="decoder training precision; bf16 autocasts the decoders (CUDA; results move slightly, so a separate "
             "run identity)")
    channels_last: bool | None = option(
        None, identity=NOT_RESULT, section=RUNS_SECTION, example=True,
        help="NHWC layout for conv decoders. Unset: on for conv decoders on CUDA, off elsewhere")
    compile: bool = option(
        False, identity=NOT_RESULT, section=RUNS_SECTION, help="torch.compile the decoders")
    device_memory_gb: float | None = option(
        None, identity=NOT_RESULT, rule=number(at_least=0, optional=True), metavar="GB", section=RUNS_SECTION,
        example=40,
        help="device memory (GiB) for keeping the training features on the device. Unset: 60% of free CUDA "
             "memory; off on CPU")
    train_views: tuple[str, ...] = option(
        (), identity=LATER, neutral=(), metavar="VIEW", flag="--train-view", split=False, section=VIEWS_SECTION,
        example=("augment:all+copy:0", "augment:all+copy:1"),
        help="augmentation: each epoch every training image reads one of these cached views, seeded by (seed, "
             "epoch, image); repeatable (e.g. augment:all+copy:0 ... copy:3; see `declip extract --view`)")
    augment_copies: int = option(
        0, identity=SHORTHAND, rule=whole(0), metavar="K", section=VIEWS_SECTION, example=4,
        help="shorthand: train_views += augment:AUGMENT+copy:0 ... copy:K-1 (K cached copies of DeCLIP's --data_aug)")
    augment: str = option(
        "all", identity=SHORTHAND, rule=choice(*AUGMENT_KINDS), choices=AUGMENT_KINDS, metavar="KIND",
        section=VIEWS_SECTION,
        help="DeCLIP's --data_aug kind that augment_copies caches copies of")

    def __post_init__(self) -> None:
        check_config(self, rules_of(TrainOptions), self.WHAT, flags_of(TrainOptions))

    @classmethod
    def from_keys(cls, raw: dict) -> "TrainOptions":
        """The options among a flat mapping's keys (a grid file's, say); every other key is ignored."""
        from declip.core.configs import leaves

        nested = raw.get("options") if isinstance(raw.get("options"), dict) else {}
        mine = {leaf.key for leaf in leaves(cls)}
        return cls.from_json({k: v for k, v in {**raw, **nested}.items() if k in mine})

    def on_device(self, cuda: bool | None = None) -> "TrainOptions":
        """``device`` and ``width`` made concrete (a no-op when both already are). ``cuda``: whether the machines
        that will run the work have CUDA (SLURM worker jobs with GPUs, say); None = this machine. A ``cuda`` device
        without an index becomes one GPU per task where the task runs (``flows.placement.task_device``)."""
        import torch

        if cuda is None:
            cuda = torch.cuda.is_available()
        device = ("cuda" if cuda else "cpu") if self.device == "auto" else self.device
        width = self.width if self.width is not None else (CPU_WIDTH if device == "cpu" else 1.0)
        return self if (device, width) == (self.device, self.width) else replace(self, device=device, width=width)

    def training_views(self) -> tuple[str, ...]:
        """Canonical training views: ``train_views`` then the ``augment_copies`` copies; () = train on clean."""
        from declip.features.views import augment_copies, parse_views

        views = [v.name for v in parse_views(list(self.train_views))]
        if self.augment_copies:
            views += [v.name for v in augment_copies(self.augment, self.augment_copies) if v.name not in views]
        return tuple(views)

    def resolved(self) -> "TrainOptions":
        """What a run is built from: on the device, the augmentation shorthand folded into ``train_views``."""
        on = self.on_device()
        views = on.training_views()
        if views == on.train_views and not on.augment_copies and on.augment == AUGMENT_DEFAULT:
            return on
        return replace(on, train_views=views, augment_copies=0, augment=AUGMENT_DEFAULT)


AUGMENT_DEFAULT = TrainOptions.__dataclass_fields__["augment"].default


def device_note(given: TrainOptions) -> str:
    """One line saying what ``auto`` and an unset width became here ('' when nothing was resolved): printed before
    training starts, since the CPU width is a DeCLIP deviation."""
    r = given.on_device()
    parts = []
    if given.device == "auto":
        parts.append(f"device auto → {r.device} ({'CUDA found' if r.device != 'cpu' else 'no CUDA here'})")
    if given.width is None:
        parts.append(f"decoders at width {r.width:g}" + (" (DeCLIP's)" if r.width == 1.0 else
                                                         ", DeCLIP's is 1.0: pass --width 1 for it"))
    return "; ".join(parts)
