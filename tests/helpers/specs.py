"""Specs shared by the tests."""

TINY_SPEC = {
    "name": "tiny",
    "task": {"source": "mnist1d", "train_fraction": 0.1},
    "architecture": {"name": "mlp", "depth": 1, "activation": "relu"},
    "grid": {"load": {"param": "width", "values": [4, 8]},
             "temperature": {"param": "batch_size", "values": [32, 64]}},
    "seeds": 2,
    "epochs": 2,
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "checkpoints": [0, 1, 2],
    "landscape": False,  # tests of landscape metrics and phases switch them on themselves
}
