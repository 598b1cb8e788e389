"""weightnets.generative: schedulers, conditioning, data, autoencoder, diffusion sampling, baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.generative import one_thread, tiny_generator
from lightning.pytorch import Trainer

import zoo
from weightnets.evaluate import evaluate_weights, predict_weights
from weightnets.generative import (
    ConditionEncoder,
    GenerationData,
    SupportSetEncoder,
    WeightAutoencoder,
    load_generator,
    make_schedulers,
    task_descriptor,
)
from weightnets.generative.baselines import (
    LatentKDE,
    TaskRegressor,
    leave_one_out_distances,
    nearest_distances,
    nearest_seen,
    wrong_agreement,
)
from weightnets.generative.conditioning import descriptor_dim
from weightnets.generative.diffusion import ddim_sample


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


# ------------------------------------------------------------------------------------------ schedulers
def test_schedulers_are_diffusers_and_never_clip():
    ddpm, ddim = make_schedulers()
    assert type(ddpm).__module__.startswith("diffusers") and type(ddim).__module__.startswith("diffusers")
    assert ddpm.config.clip_sample is False and ddim.config.clip_sample is False
    assert ddpm.config.beta_schedule == "linear" and ddpm.config.num_train_timesteps == 1000


@pytest.mark.parametrize("t", [0, 10, 500, 999])
def test_noise_then_denoise_with_the_true_noise_recovers_x0(t):
    ddpm, ddim = make_schedulers()
    gen = torch.Generator().manual_seed(t)
    x0 = 5.0 * torch.randn(4, 8, generator=gen)  # far outside [-1, 1]: a clamp would show
    noise = torch.randn(4, 8, generator=gen)
    xt = ddpm.add_noise(x0, noise, torch.full((4,), t))
    ddim.set_timesteps(50)
    out = ddim.step(noise, t, xt, eta=0.0)
    assert torch.allclose(out.pred_original_sample, x0, atol=1e-3)


def test_ddim_chain_with_the_true_noise_ends_at_x0():
    ddpm, ddim = make_schedulers()
    gen = torch.Generator().manual_seed(0)
    x0 = 3.0 * torch.randn(5, 16, generator=gen)
    abar = ddpm.alphas_cumprod

    def oracle(z, t):  # the noise that z_t holds given x0
        return (z - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt()

    z = ddim_sample(oracle, ddim, torch.randn(5, 16, generator=gen), steps=25)
    assert torch.allclose(z, x0, atol=1e-3)


# ------------------------------------------------------------------------------------------ conditioning
def test_task_descriptor_layout_and_errors():
    ids = list(range(10))
    d = task_descriptor({"source": "mnist1d", "class_subset": [2, 7]}, ids)
    assert d.shape == (descriptor_dim(10),) and d[:10].nonzero().flatten().tolist() == [2, 7]
    assert d[10] == 1.0  # kind 'none'
    noisy = task_descriptor({"source": "mnist1d", "corruption": {"kind": "noise", "level": 0.5, "seed": 1}}, ids)
    assert noisy[:10].sum() == 10 and noisy[11] == 1.0 and noisy[14] == pytest.approx(0.5)
    with pytest.raises(zoo.ZooError, match=r"class ids \[12\] are outside the source task's classes"):
        task_descriptor({"class_subset": [1, 12]}, ids)
    with pytest.raises(zoo.ZooError, match="label permutation"):
        task_descriptor({"label_permutation": [1, 0]}, ids)


def test_support_set_encoder_is_permutation_invariant():
    torch.manual_seed(0)
    enc = SupportSetEncoder(in_features=6, n_classes=3, cond_dim=8, d_model=16).eval()
    x, y = torch.randn(2, 5, 6), torch.randint(0, 3, (2, 5))
    perm = torch.randperm(5)
    assert torch.allclose(enc(x, y), enc(x[:, perm], y[:, perm]), atol=1e-5)
    assert not torch.allclose(enc(x, y)[0], enc(x, (y + 1) % 3)[0], atol=1e-4)  # labels matter


def test_condition_dropout_uses_the_null_vector_and_keeps_the_base():
    torch.manual_seed(0)
    enc = ConditionEncoder("descriptor", n_bases=2, n_classes=10, in_features=40, cond_dim=8)
    desc = torch.rand(3, descriptor_dim(10))
    base = torch.tensor([0, 1, 1])
    keep = torch.tensor([True, False, True])
    cond = enc(3, base=base, descriptor=desc, keep=keep)
    assert torch.allclose(cond[1], enc.null + enc.base.weight[1])
    assert torch.allclose(cond[0], enc(3, base=base, descriptor=desc)[0])
    assert not torch.allclose(cond[2] - enc.base.weight[1], enc.null)


# ------------------------------------------------------------------------------------------ data
def test_generation_data_rows_are_task_vectors_with_descriptors(tree_quick):
    dm = GenerationData(str(tree_quick), "mlp", families=["class_subset", "corruption"])
    dm.setup()
    z = zoo.open(tree_quick)
    ctx = dm.context
    assert ctx.split_name == "ood_tasks" and ctx.target == "delta" and ctx.base_ids == [0, 1]
    assert sorted(dm.model_ids.tolist()) == [2, 3, 5, 6, 7, 8, 9, 11, 12, 13]  # no label permutations
    r = int(np.flatnonzero(dm.model_ids == 9)[0])
    assert torch.allclose(dm.targets[r], z.task_vector(9))
    assert dm.descriptors[r][:10].nonzero().flatten().tolist() == [4, 5, 6, 9]
    assert not set(ctx.test_tasks) & set(ctx.train_tasks)
    x, y = dm.support(dm.task_keys[r], 5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 40) and set(y.tolist()) <= {4, 5, 6, 9}


# ------------------------------------------------------------------------------------------ autoencoder
def test_autoencoder_reconstructs_a_tiny_zoo(tree_quick):
    torch.manual_seed(0)
    dm = GenerationData(str(tree_quick), "mlp", families=["class_subset", "corruption"], batch_size=4,
                        train_repeats=50)
    ae = WeightAutoencoder(d_model=32, n_heads=2, n_layers=1, latent_dim=16, lr=3e-3, warmup_steps=20)
    Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, accelerator="cpu").fit(ae, datamodule=dm)
    rows = dm.rows("train")
    raw = dm.targets[torch.from_numpy(rows)]
    rec = ae.reconstruct(raw)
    rel = ((rec - raw).norm(dim=1) / raw.norm(dim=1)).max().item()
    assert rel < 0.2
    weights = dm.context.to_weights(rec, dm.base_pos[torch.from_numpy(rows)])
    original = dm.context.to_weights(raw, dm.base_pos[torch.from_numpy(rows)])
    acc, ref = dm.evaluate(weights, rows, "test"), dm.evaluate(original, rows, "test")
    assert np.mean(acc) / np.mean(ref) > 0.97


# ------------------------------------------------------------------------------------------ sampling
def test_guidance_zero_equals_the_unconditional_sampler(tmp_path_factory):
    gen = load_generator(tiny_generator(tmp_path_factory))
    ctx = gen.context
    desc = torch.stack([task_descriptor(ctx.tasks[k], ctx.class_ids) for k in ctx.test_tasks][:2])
    base = torch.tensor([0, 1])
    w0 = gen.generate(base=base, descriptor=desc, guidance=0.0, seed=3)
    uncond = gen.generate(base=base, descriptor=desc, unconditional=True, seed=3)
    cond = gen.generate(base=base, descriptor=desc, guidance=1.0, seed=3)
    assert w0.shape == (2, ctx.n_params)
    assert torch.allclose(w0, uncond, atol=1e-5)
    assert not torch.allclose(cond, uncond, atol=1e-5)
    assert torch.equal(gen.generate(base=base, descriptor=desc, guidance=2.0, seed=3),
                       gen.generate(base=base, descriptor=desc, guidance=2.0, seed=3))


def test_support_generator_samples_from_k_examples(tmp_path_factory):
    gen = load_generator(tiny_generator(tmp_path_factory, "support"))
    assert gen.support_k == 4 and gen.hparams.conditioning == "support"
    x, y = torch.randn(3, 4, 40), torch.randint(0, 10, (3, 4))
    w = gen.generate(base=torch.tensor([0, 1, 0]), support_x=x, support_y=y, seed=0)
    assert w.shape == (3, gen.context.n_params) and torch.isfinite(w).all()


# ------------------------------------------------------------------------------------------ baselines
def test_nearest_seen_breaks_ties_by_size_then_row():
    train = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [1, 1, 1, 0], [0, 1, 1, 0]], dtype=bool)
    assert nearest_seen(train, np.array([1, 1, 1, 1], dtype=bool), k=2).tolist() == [1, 2]
    assert nearest_seen(train, np.array([0, 1, 0, 0], dtype=bool)).tolist() == [0]


def test_distances_and_wrong_agreement():
    train = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    d, rows = nearest_distances(torch.tensor([[3.0, 5.0], [0.0, 0.1]]), train)
    assert np.allclose(d, [1.0, 0.1]) and rows.tolist() == [1, 0]
    assert np.allclose(leave_one_out_distances(train), [1.0, np.sqrt(18.0), 1.0])
    y = np.array([0, 1, 2, 3])
    assert wrong_agreement(np.array([0, 2, 0, 1]), np.array([0, 2, 1, 1]), y) == pytest.approx(2 / 3)
    assert np.isnan(wrong_agreement(y, y, y))


def test_task_regressor_recovers_a_linear_map_per_base():
    gen = torch.Generator().manual_seed(0)
    desc = (torch.rand(80, 6, generator=gen) > 0.5).float()
    base = torch.randint(0, 2, (80,), generator=gen)
    maps = torch.randn(2, 6, 5, generator=gen)
    y = torch.einsum("nd,ndp->np", desc, maps[base]) + torch.tensor([[1.0], [-1.0]])[base]
    reg = TaskRegressor(2, alphas=(1e-6, 10.0)).fit(desc[:60], base[:60], y[:60], desc[60:], base[60:], y[60:])
    assert reg.alpha == 1e-6
    assert torch.allclose(reg.predict(desc[60:], base[60:]), y[60:], atol=1e-3)


def test_latent_kde_bandwidth_follows_scott():
    anchors = torch.tensor([[0.0, 0.0], [2.0, 4.0]])
    kde = LatentKDE(anchors)
    assert torch.allclose(kde.bandwidth, anchors.std(0) * 2 ** (-1 / 6))
    s = kde.sample(1000, torch.Generator().manual_seed(0))
    assert s.shape == (1000, 2) and abs(s[:, 1].mean().item() - 2.0) < 0.5


def test_predict_weights_matches_evaluate_weights(tree_quick):
    z = zoo.open(tree_quick)
    x, y = z.task_data(2, "test")
    w = z.weights([2, 3, 8])
    w[1, 0] = float("nan")
    arch = z.empty_model(2)
    pred = predict_weights(w, arch, x)
    acc = evaluate_weights(w, arch, x, y).acc
    assert (pred[1] == -1).all() and np.isnan(acc[1])
    assert np.allclose((pred[[0, 2]] == y).double().mean(1).numpy(), acc[[0, 2]])


def test_unconditional_pdiff_mode_on_one_tasks_checkpoints(tiny_zoo_path, tmp_path):
    from weightnets.generative import LatentDiffusion
    from weightnets.generative.sample import generate_requests, resolve_requests

    z = zoo.open(tiny_zoo_path)
    arch = sorted(z.architectures)[0]
    task = str(z.models["task"][0])

    def data():
        return GenerationData(str(tiny_zoo_path), arch, target="weights", checkpoints=[1, 2], task=task,
                              split_name="default", batch_size=4, train_repeats=10)

    torch.manual_seed(0)
    ae = WeightAutoencoder(view="chunks", chunk_size=16, d_model=16, n_heads=2, n_layers=1, latent_dim=8)
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(ae, datamodule=data())
    assert ae.context.target == "weights" and ae.context.base_ids == [] and ae.context.task_filter == task
    trainer.save_checkpoint(tmp_path / "ae.ckpt")
    diff = LatentDiffusion(autoencoder=str(tmp_path / "ae.ckpt"), conditioning="none", hidden=16, n_blocks=1,
                           cond_dim=8, cond_dropout=0.0, sample_steps=4)
    trainer = Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(diff, datamodule=data())
    trainer.save_checkpoint(tmp_path / "diff.ckpt")
    gen = load_generator(tmp_path / "diff.ckpt")
    w = gen.generate(3, seed=1)
    assert w.shape == (3, z.layout(arch).n_params) and torch.isfinite(w).all()
    requests = resolve_requests(gen, z, "seen")
    assert [r.task_key for r in requests] == [task] and requests[0].base_id == -1
    (res,) = generate_requests(gen, z, requests, 2, seed=0)
    assert res.weights.shape == (2, z.layout(arch).n_params) and np.isfinite(res.metrics["test_acc"]).all()
    with pytest.raises(zoo.ZooError, match="unconditional"):
        generate_requests(gen, z, requests, 2, guidance=2.0)
