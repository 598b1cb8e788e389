"""ProbeX and Dense recover a signal planted in a hidden layer; tree experts route every model right;
the layer sweep picks the planted layer on validation; shapes, dtypes and parameter counts."""

import pytest
import torch
from helpers.planted import fit_quietly

from weightnets import LayerProbe, ProbeX, ZooDataModule
from weightnets.probes import DenseProbe, TreeRouter


def test_probex_shapes_dtypes_and_parameter_count():
    probe = ProbeX(d_out=6, d_in=7, n_outputs=4, r_u=3, d_v=5, r_t=8, n_experts=2)
    x = torch.randn(10, 6, 7)
    expert = torch.tensor([0, 1] * 5)
    out = probe(x, expert)
    assert out.shape == (10, 4) and out.dtype == torch.float32
    assert probe.params_per_expert() == 7 * 3 + 6 * 5 + 3 * 5 * 8 + 8 + 8 * 4 + 4
    # each model goes through its own expert only
    alone = ProbeX(6, 7, 4, 3, 5, 8, n_experts=1)
    with torch.no_grad():
        for name, p in alone.named_parameters():
            p.copy_(getattr(probe, name)[1:2])
    assert torch.allclose(out[1::2], alone(x[1::2]), atol=1e-6)
    with pytest.raises(ValueError, match="layer matrices"):
        probe(torch.randn(2, 7, 6), None)
    dense = DenseProbe(6, 7, 4)
    assert dense(x).shape == (10, 4) and dense.params_per_expert() == 6 * 7 * 4 + 4


def test_router_assigns_the_nearest_tree_centroid():
    router = TreeRouter(2, (3, 2))
    a, b = torch.zeros(5, 3, 2), torch.ones(5, 3, 2) * 4
    router.accumulate(torch.cat([a, b]), torch.tensor([0] * 5 + [1] * 5))
    router.finish()
    assert router(torch.cat([a + 0.3, b - 1.0])).tolist() == [0] * 5 + [1] * 5
    assert torch.equal(router.center(b, torch.ones(5, dtype=torch.int64)), torch.zeros(5, 3, 2))


@pytest.mark.parametrize("learner, experts", [("probex", True), ("probex", False), ("dense", False)])
def test_probes_recover_a_class_set_planted_in_a_hidden_layer(planted_tree, learner, experts):
    dm = ZooDataModule(planted_tree, target="classes", view="flat", batch_size=32, cache=True)
    module = LayerProbe(learner=learner, layer="auto", experts=experts, lr=3e-3, r_u=8, d_v=8, r_t=16)
    metrics = fit_quietly(module, dm, max_epochs=25)
    assert module.candidates == ["layers.0", "layers.1"]  # 'auto': the hidden layers
    assert module.selected_name == "layers.1"  # chosen on validation
    assert metrics["test/label_acc"] >= 0.9 and metrics["test/layer/layers.0/label_acc"] < 0.75
    assert metrics["selection/layers.1/val_score"] > metrics["selection/layers.0/val_score"]
    if experts:
        assert metrics["test/route_acc"] == 1.0
    if learner == "probex":
        assert module.trained_params == (2 if experts else 1) * module.encoders["layers__1"].params_per_expert()


def test_probex_regression_on_a_single_layer_view(planted_tree):
    dm = ZooDataModule(planted_tree, target="test_acc", view="layers.1", batch_size=32, cache=True)
    module = LayerProbe(learner="probex", layer="auto", experts=True, lr=3e-3, r_u=8, d_v=8, r_t=16)
    metrics = fit_quietly(module, dm, max_epochs=25)
    assert module.candidates == ["layers.1"] and metrics["test/kendall_tau"] > 0.6


def test_a_saved_probe_loads_with_its_data_spec_and_predicts_the_same(planted_tree, tmp_path):
    import lightning.pytorch as pl
    from helpers.planted import one_thread

    dm = ZooDataModule(planted_tree, target="classes", view="flat", batch_size=32, cache=True)
    module = LayerProbe(learner="probex", layer="auto", experts=True, r_u=4, d_v=4, r_t=8)
    with one_thread():
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path)
        trainer.fit(module, datamodule=dm)
        path = tmp_path / "probe.ckpt"
        trainer.save_checkpoint(path)
        loaded = LayerProbe.load_from_checkpoint(path).eval()
        batch = next(iter(dm.loader("test")))
        module.eval()
        with torch.no_grad():
            a, routes_a = module.outputs(batch, train=False)
            b, routes_b = loaded.outputs(batch, train=False)
    assert loaded.spec.to_record() == dm.spec.to_record() and loaded.selected_name == module.selected_name
    assert all(torch.equal(a[k], b[k]) for k in a) and all(torch.equal(routes_a[k], routes_b[k]) for k in routes_a)
