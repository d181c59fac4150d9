"""The record of a training run: one entry per epoch, kept in checkpoints and plotted."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class History:
    """Per-epoch results of :func:`fit`; each list has one entry per epoch run."""

    epoch: list[int] = field(default_factory=list)  # 1-based
    train_loss: list[float] = field(default_factory=list)  # mean over the epoch's samples (weighted: see weighted)
    train_accuracy: list[float] = field(default_factory=list)  # during the epoch; empty for regression
    val_loss: list[float] = field(default_factory=list)  # empty without validation data
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time of the epoch's steps
    samples_per_second: list[float] = field(default_factory=list)
    stopped_early: bool = False
    weighted: bool = False  # train_loss is the row-weighted loss (fit's sample_weight, class_weight)
    best_epoch: int | None = None  # set by EarlyStopping
    # settings changed on a resume with allow_changes: {"epoch", "step", "changed": {name: [old, new]}}
    changes: list[dict] = field(default_factory=list)

    def last(self) -> dict:
        """The last epoch's values as a dict (empty before the first epoch)."""
        if not self.epoch:
            return {}
        out = {"epoch": self.epoch[-1], "train_loss": self.train_loss[-1], "lr": self.lr[-1]}
        if self.train_accuracy:
            out["train_accuracy"] = self.train_accuracy[-1]
        if self.val_loss:
            out["val_loss"] = self.val_loss[-1]
        if self.val_accuracy:
            out["val_accuracy"] = self.val_accuracy[-1]
        out["seconds"] = self.seconds[-1]
        out["samples_per_second"] = self.samples_per_second[-1]
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
