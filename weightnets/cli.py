"""``weightzoo fit --config CFG [--data.store STORE] [--seed_everything N] [--trainer.default_root_dir RUN]``.

A :class:`lightning.pytorch.cli.LightningCLI` in subclass mode: the config names any
``LightningModule`` (``model.class_path``) and ``LightningDataModule`` (``data.class_path``), and every
field can be overridden with a dotted flag, as usual with LightningCLI (jsonargparse).

What it adds to a plain ``LightningCLI`` run:

* everything of one run lands in one folder ``RUN`` (``--trainer.default_root_dir``, default
  ``runs/fit``): ``RUN/config.yaml``, ``RUN/metrics.csv`` (the CSV log), ``RUN/checkpoints/*.ckpt``;
* a module that has ``monitor`` (a logged validation metric) and ``monitor_mode`` (``min``/``max``)
  attributes gets a :class:`~lightning.pytorch.callbacks.ModelCheckpoint` that keeps the best epoch on
  that metric (unless the config brings its own checkpoint callback);
* after fitting, the best validation checkpoint (never the last epoch chosen by test metrics) is
  evaluated on the test split and ``RUN/test_metrics.json`` holds ``{name: value}`` of every metric
  logged in the test loop, plus ``best_checkpoint``, ``best_score``, ``monitor``, ``seed``,
  ``fit_time_s`` (wall seconds of ``trainer.fit``) and ``trained_params`` (the module's ``trained_params``
  attribute when it has one, e.g. the parameters of the candidate a layer sweep selected; otherwise the
  number of trainable parameters).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from argparse import ArgumentError
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from weightnets.interrupt import interruptible
from zoo.atomic import atomic_output
from zoo.errors import ZooError

DEFAULT_ROOT = "runs/fit"


class FitCLI(LightningCLI):
    """LightningCLI that fits, then tests the best validation checkpoint and writes ``test_metrics.json``."""

    def __init__(self, args: Sequence[str] | None = None) -> None:
        super().__init__(
            model_class=LightningModule, datamodule_class=LightningDataModule, subclass_mode_model=True,
            subclass_mode_data=True, args=list(args) if args is not None else None, run=False,
            save_config_kwargs={"overwrite": True}, trainer_defaults={"default_root_dir": DEFAULT_ROOT},
            parser_kwargs={"prog": "weightzoo fit", "description": "train a weight-space model (LightningCLI)",
                           "exit_on_error": False})

    def before_instantiate_classes(self) -> None:
        trainer = self.config["trainer"]
        root = trainer.get("default_root_dir") or DEFAULT_ROOT
        trainer["default_root_dir"] = root
        if trainer.get("logger") in (None, True):  # one folder per run: RUN/metrics.csv beside RUN/checkpoints
            trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                 "init_args": {"save_dir": root, "name": "", "version": ""}}

    def after_instantiate_classes(self) -> None:
        monitor = getattr(self.model, "monitor", None)
        if monitor is None:
            return
        callbacks = self.trainer.callbacks
        for i, cb in enumerate(callbacks):
            if isinstance(cb, ModelCheckpoint) and cb.monitor is None:  # Lightning's default: replace it
                callbacks[i] = ModelCheckpoint(dirpath=Path(self.trainer.default_root_dir) / "checkpoints",
                                               monitor=monitor, mode=getattr(self.model, "monitor_mode", "min"),
                                               filename="best-{epoch}", save_last=False)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else value
    return value


def fit_and_test(args: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``weightzoo fit`` with ``args`` (the flags after ``fit``) and return the test metrics written
    to ``RUN/test_metrics.json``."""
    args = list(args) if args is not None else sys.argv[1:]
    threads = os.environ.get("WEIGHTZOO_THREADS", "1")
    if not threads.isdigit() or int(threads) < 1:
        raise ZooError(f"WEIGHTZOO_THREADS must be a positive integer, got {threads!r}")
    torch.set_num_threads(int(threads))  # one by default: measured faster on shared 2-core machines
    try:
        with warnings.catch_warnings():  # the flags come from 'weightzoo fit', not from sys.argv
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
            cli = FitCLI(args)
    except ArgumentError as exc:  # a bad flag, config file or config field: one line, exit 2
        lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip(" -")]
        raise ZooError(f"{'; '.join(lines)} (see 'weightzoo fit --help')") from None
    except MisconfigurationException as exc:  # a trainer setting Lightning refuses (max_epochs -5, ...)
        raise ZooError(f"trainer: {exc}") from None
    trainer: Trainer = cli.trainer
    root = Path(trainer.default_root_dir)
    if root.exists() and not root.is_dir():
        raise ZooError(f"trainer.default_root_dir {root}: a file, not a run folder")
    (root / "test_metrics.json").unlink(missing_ok=True)  # a rerun's folder never looks finished before it is
    monitor = getattr(cli.model, "monitor", None)
    every = trainer.check_val_every_n_epoch
    if monitor is not None and every is not None and trainer.max_epochs is not None \
            and 0 <= trainer.max_epochs < every:
        raise ZooError(f"trainer: max_epochs {trainer.max_epochs} < check_val_every_n_epoch {every}: no validation "
                       f"would run, so there would be no best checkpoint on {monitor!r}; lower "
                       "--trainer.check_val_every_n_epoch")
    start = time.perf_counter()
    interruptible(trainer, trainer.fit, cli.model, datamodule=cli.datamodule)
    fit_time = time.perf_counter() - start
    ckpt = trainer.checkpoint_callback
    best = getattr(ckpt, "best_model_path", "") or None
    if monitor is not None and best is None:
        raise ZooError(f"no checkpoint was selected on {monitor!r} (no validation epoch logged it); "
                       f"{root}/test_metrics.json not written")
    results = interruptible(trainer, trainer.test, cli.model, datamodule=cli.datamodule,
                            ckpt_path=best if best else None, verbose=True)
    metrics: dict[str, Any] = {}
    for block in results:
        metrics.update({k: _plain(v) for k, v in block.items()})
    metrics["best_checkpoint"] = best
    metrics["best_score"] = _plain(getattr(ckpt, "best_model_score", None)) if best else None
    metrics["monitor"] = getattr(ckpt, "monitor", None)
    metrics["seed"] = cli.config.get("seed_everything")
    metrics["fit_time_s"] = fit_time
    metrics["trained_params"] = trained_params(cli.model)
    with atomic_output(root / "test_metrics.json") as tmp:  # appears only when complete
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def trained_params(model: LightningModule) -> int:
    """The module's ``trained_params`` when it defines one, else its number of trainable parameters."""
    value = getattr(model, "trained_params", None)
    if value is not None:
        return int(value)
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))

