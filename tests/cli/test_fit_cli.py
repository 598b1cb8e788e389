"""``weightzoo fit``: the LightningCLI runner fits, tests the best validation checkpoint and writes
``RUN/test_metrics.json`` (with toy modules, so the runner is tested apart from any learner)."""

import json

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, TensorDataset

from weightzoo.cli import main


class ToyData(LightningDataModule):
    def __init__(self, n: int = 64, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])

    def _loader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=16)

    def train_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()


class ToyRegressor(LightningModule):
    monitor = "val/mse"
    monitor_mode = "min"

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(3, 1)

    def _mse(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

    def training_step(self, batch, _):
        return self._mse(batch)

    def validation_step(self, batch, _):
        self.log("val/mse", self._mse(batch))

    def test_step(self, batch, _):
        self.log("test/mse", self._mse(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def test_fit_writes_test_metrics_of_the_best_checkpoint(tmp_path):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"""
model: {{class_path: {__name__}.ToyRegressor, init_args: {{lr: 0.1}}}}
data: {{class_path: {__name__}.ToyData}}
trainer: {{max_epochs: 4, enable_progress_bar: false, enable_model_summary: false, accelerator: cpu}}
""")
    run = tmp_path / "run"
    assert main(["fit", "--config", str(cfg), "--trainer.default_root_dir", str(run), "--seed_everything", "3"]) == 0
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["monitor"] == "val/mse" and metrics["seed"] == 3
    assert metrics["best_checkpoint"].startswith(str(run / "checkpoints"))
    assert metrics["test/mse"] < 1.0  # learned something: the target's variance is about 5
    assert (run / "metrics.csv").exists() and (run / "config.yaml").exists()


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["fit", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("weightzoo fit: error:") and "missing.yaml" in err[0]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {class_path: no_such_module.Model}\n")
    assert main(["fit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_module" in err[0]
