"""A Small CNN Zoo release (Unterthiner et al. 2020) written in its own format, for importer tests."""

import numpy as np
import pandas as pd

EPOCHS = [0, 1, 86]
KERAS_ACT = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh}


def keras_variables(rng, channels=16, n_classes=10):
    """Variables of the Keras model (conv kernels HWIO, dense kernel [in, out]) in the release's row order:
    per layer the bias, then the kernel (TF's variable order)."""
    shapes = []
    c_in = 1
    for name in ("conv2d", "conv2d_1", "conv2d_2"):
        shapes += [(f"sequential/{name}/bias:0", (channels,)), (f"sequential/{name}/kernel:0", (3, 3, c_in, channels))]
        c_in = channels
    shapes += [("sequential/dense/bias:0", (n_classes,)), ("sequential/dense/kernel:0", (channels, n_classes))]
    return [(n, s, (0.3 * rng.standard_normal(s)).astype(np.float32)) for n, s in shapes]


def keras_forward(variables, x_nhwc, activation):
    """Numpy re-implementation of Keras Conv2D(stride 2, 'valid') → act, x3, GlobalAveragePooling2D, Dense."""
    v = {n: a for n, _, a in variables}
    h = x_nhwc
    for name in ("conv2d", "conv2d_1", "conv2d_2"):
        k, b = v[f"sequential/{name}/kernel:0"], v[f"sequential/{name}/bias:0"]
        n, height, width, _ = h.shape
        oh, ow = (height - 3) // 2 + 1, (width - 3) // 2 + 1
        out = np.zeros((n, oh, ow, k.shape[3]), dtype=np.float64)
        for i in range(oh):
            for j in range(ow):
                patch = h[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, k)
        h = KERAS_ACT[activation](out + b)
    pooled = h.mean(axis=(1, 2))
    return pooled @ v["sequential/dense/kernel:0"] + v["sequential/dense/bias:0"]


def write_release(d, runs, *, extra_column=True):
    """weights.npy, metrics.csv (first column: checkpoint path) and layout.csv; ``runs`` is a list of
    (activation, dataset, {epoch: variables}). Returns nothing; rows are run-major, epoch-minor."""
    d.mkdir(parents=True, exist_ok=True)
    rows, index, flat = [], [], []
    for r, (activation, dataset, per_epoch) in enumerate(runs):
        modeldir = f"/tmp/dnn_science_workdir/{dataset}/run_{r:04d}"
        for epoch, variables in per_epoch.items():
            flat.append(np.concatenate([a.reshape(-1) for _, _, a in variables]))
            index.append(f"{modeldir}/permanent_ckpt-{epoch}")
            row = {"config.activation": activation, "config.b_init": "zero", "config.dataset": dataset,
                   "config.dnn_architecture": "cnn", "config.dropout": 0.0, "config.epochs": 86,
                   "config.epochs_between_checkpoints": 20, "config.init_std": 0.05, "config.l2reg": 1e-4 * (r + 1),
                   "config.learning_rate": 0.01 * (r + 1), "config.num_layers": 3, "config.num_units": 16,
                   "config.optimizer": "adam", "config.random_seed": 42, "config.train_fraction": 0.5,
                   "config.w_init": "he_normal", "modeldir": modeldir, "step": 117 * epoch,
                   "test_accuracy": 0.1 + 0.001 * epoch, "test_loss": 2.3 - 0.01 * epoch,
                   "train_accuracy": 0.1 + 0.002 * epoch, "train_loss": 2.3 - 0.02 * epoch}
            if extra_column:
                row["config.extra_flag"] = "kept"
            rows.append(row)
    pd.DataFrame(rows, index=index).to_csv(d / "metrics.csv")
    np.save(d / "weights.npy", np.stack(flat).astype(np.float32))
    variables = runs[0][2][next(iter(runs[0][2]))]
    layout, start = [], 0
    for name, shape, a in variables:
        layout.append({"varname": name, "start_idx": start, "end_idx": start + a.size, "shape": str(tuple(shape))})
        start += a.size
    pd.DataFrame(layout).to_csv(d / "layout.csv", index=False)
