"""DeCLIP's plateau schedule, early stopping and model selection (declip-method §5.4), as a small state machine.

* Selection: a new best checkpoint whenever the validation score beats the best so far (initial 0, strict ``>``).
* Plateau: an epoch improves only if ``score >= reference + delta`` (delta 0.001, IoU in percent); after
  ``patience`` (5) epochs without improvement the lr is divided by 10 and the counter restarts with delta 0.002,
  its first epoch becoming the new reference. Training stops once the divided lr falls below ``min_lr`` (1e-6),
  so it runs at 1e-3, 1e-4, 1e-5, 1e-6 and ends at the fourth plateau, or at ``max_epochs``.
* Weights are not rolled back to the best epoch on an lr drop (DeCLIP doesn't either).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from declip.pipeline.train.recipe import DECLIP_TRAINING


@dataclass
class EpochDecision:
    new_best: bool
    lr: float
    lr_dropped: bool
    stop: bool
    reason: str = ""


@dataclass
class PlateauSchedule:
    lr: float = DECLIP_TRAINING.lr
    patience: int = DECLIP_TRAINING.patience
    first_delta: float = DECLIP_TRAINING.first_margin
    later_delta: float = DECLIP_TRAINING.later_margin
    factor: float = DECLIP_TRAINING.lr_factor
    min_lr: float = DECLIP_TRAINING.min_lr
    max_epochs: int = DECLIP_TRAINING.max_epochs
    # state
    epoch: int = 0
    best: float = 0.0
    best_epoch: int = -1
    reference: float | None = None
    counter: int = 0
    drops: int = 0
    stopped: bool = False

    @property
    def delta(self) -> float:
        return self.first_delta if self.drops == 0 else self.later_delta

    def step(self, score: float) -> EpochDecision:
        """Feed one epoch's validation score; says whether to save, the lr to use next, and whether to stop."""
        self.epoch += 1
        new_best = score > self.best
        if new_best:
            self.best, self.best_epoch = score, self.epoch - 1
        dropped, stop, reason = False, False, ""
        if self.reference is None or score >= self.reference + self.delta:
            self.reference, self.counter = score, 0
        else:
            self.counter += 1
            if self.counter >= self.patience:
                new_lr = self.lr * self.factor
                if new_lr < self.min_lr * (1 - 1e-9):
                    stop, reason = True, f"plateau at lr {self.lr:g}: next lr {new_lr:g} < min_lr {self.min_lr:g}"
                else:
                    self.lr, self.drops, dropped = new_lr, self.drops + 1, True
                    self.reference, self.counter = None, 0
        if not stop and self.epoch >= self.max_epochs:
            stop, reason = True, f"reached max_epochs {self.max_epochs}"
        self.stopped = stop
        return EpochDecision(new_best, self.lr, dropped, stop, reason)

    def epochs_left_if_flat(self) -> int:
        """Epochs still to run if no epoch improves from now on: the rest of this plateau plus ``patience + 1`` per
        lr drop left (a plateau's first epoch sets its reference), capped by ``max_epochs`` (0 once stopped)."""
        if self.stopped:
            return 0
        drops_left, lr = 0, self.lr * self.factor
        while lr >= self.min_lr * (1 - 1e-9):
            drops_left, lr = drops_left + 1, lr * self.factor
        flat = (self.patience - self.counter) + (self.reference is None) + (self.patience + 1) * drops_left
        return max(0, min(flat, self.max_epochs - self.epoch))

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "PlateauSchedule":
        return cls(**state)
