"""DeCLIP's training recipe (declip-method §5.3–5.4) as one frozen record: the single source of its numbers.

:class:`declip.pipeline.train.options.TrainOptions` (and through it every command's flags, the grid's TOML keys and
the demo) and :class:`declip.pipeline.train.schedule.PlateauSchedule` read their defaults from
:data:`DECLIP_TRAINING`, so changing a number here changes it everywhere; ``tests/pipeline/train/test_recipe.py``
checks these numbers against the method description. (Not to be confused with ``features.preprocess.RECIPES``, the
registry of image preprocessing recipes.)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeclipRecipe:
    """The numbers of DeCLIP's localization training (``--fully_supervised``, README command line)."""

    lr: float = 1e-3  # AdamW learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas (beta1 from --beta1)
    weight_decay: float = 0.0  # AdamW weight decay: 0, so effectively Adam
    batch_size: int = 64
    max_epochs: int = 400  # --niter
    patience: int = 5  # --earlystop_epoch
    first_margin: float = 0.001  # IoU (percent) gain that counts as an improvement before the first lr drop
    later_margin: float = 0.002  # ... and after it
    lr_factor: float = 0.1  # lr is divided by 10 at each plateau
    min_lr: float = 1e-6  # training stops once the divided lr would fall below this
    target_size: int = 256  # soft BCE targets are 256×256
    threshold: float = 0.5  # evaluation binarises the sigmoid map at p > 0.5


DECLIP_TRAINING = DeclipRecipe()
