"""The ``safetensors-dir`` importer on a Model-J-style tree of per-model safetensors files."""

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import ArchitectureMismatchError, ZooError
from zoo.importers import import_public


def hf_cache_file(root, repo: str, tensors: dict, metadata: dict):
    """A file where the Hugging Face cache keeps it: ``models--<repo>/snapshots/<ref>/model.safetensors``."""
    d = root / f"models--{repo.replace('/', '--')}" / "snapshots" / "3f2a9c" / "model.safetensors"
    d.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d), metadata=metadata)
    return d


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("modelj") / "models"
    torch.manual_seed(0)
    mlps = [zoo.build_architecture("mlp", (20,), 5, {"width": 12, "depth": 2, "activation": "tanh"}) for _ in range(2)]
    for i, m in enumerate(mlps):
        hf_cache_file(root, f"user/mlp-{i}", m.state_dict(),
                      {"dataset_chosen_targets": "['cat', 'dog', '__import__(\"os\")']", "lr": f"{0.001 * (i + 1)}",
                       "activation": "tanh", "epoch": "10", "augment": "true" if i else "false"})
    cnn = zoo.build_architecture("cnn2d", (1, 28, 28), 10, {})
    hf_cache_file(root, "user/cnn", cnn.state_dict(), {"epoch": "10", "lr": "0.01"})
    vit = {"vit.embeddings.cls_token": torch.randn(1, 1, 8, dtype=torch.float16),
           "vit.encoder.layer.0.attention.query.weight": torch.randn(8, 8, dtype=torch.float16),
           "vit.encoder.layer.0.attention.query.bias": torch.randn(8, dtype=torch.float16),
           "classifier.weight": torch.randn(3, 8, dtype=torch.float16)}
    hf_cache_file(root, "user/vit", vit, {"epoch": "10", "lr": "0.02", "note": "x"})
    return root, mlps, cnn, vit


def test_groups_infers_architectures_and_keeps_metadata(tree, tmp_path):
    root, mlps, cnn, vit = tree
    z = import_public(root, "safetensors-dir", tmp_path / "j.zarr", progress=False)
    df = z.models.set_index("file")
    assert z.n_models == 4 and z.checkpoint_epochs == [10] and len(z.architectures) == 3
    mlp_rows = df[df["architecture"] == "mlp"]
    assert len(mlp_rows) == 2 and sorted(mlp_rows["lr"]) == pytest.approx([0.001, 0.002])
    # strings are kept verbatim, never evaluated
    assert set(mlp_rows["dataset_chosen_targets"]) == {"['cat', 'dog', '__import__(\"os\")']"}
    assert list(mlp_rows["augment"]) == ["false", "true"]  # text: the other files lack the key
    x = torch.randn(4, 20)
    for i, m in enumerate(mlps):
        mid = int(df.loc[f"models--user--mlp-{i}/snapshots/3f2a9c/model.safetensors", "model_id"])
        torch.testing.assert_close(z.build_model(mid)(x), m(x))
    cnn_id = int(df.loc["models--user--cnn/snapshots/3f2a9c/model.safetensors", "model_id"])
    arch = z.architectures[z.models.loc[cnn_id, "arch_key"]]
    assert arch["name"] == "cnn2d" and arch["input_shape"] == [1, 28, 28]
    assert z.meta["import"]["assumed"][z.models.loc[cnn_id, "arch_key"]] == {"activation": "tanh"}
    xi = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(z.build_model(cnn_id)(xi), cnn(xi))


def test_unknown_architecture_gets_a_generic_layout(tree, tmp_path):
    root, _, _, vit = tree
    z = import_public(root, "safetensors-dir", tmp_path / "j.zarr", progress=False)
    vid = int(z.models.index[z.models["file"].str.startswith("models--user--vit")][0])
    assert z.models.loc[vid, "architecture"] == "generic" and z.models.loc[vid, "source_dtype"] == "F16"
    state = z.state_dict(vid)
    assert set(state) == set(vit)
    for k, v in vit.items():
        torch.testing.assert_close(state[k], v.float())
    with pytest.raises(ArchitectureMismatchError, match="generic parameter layout"):
        z.build_model(vid)
    assert z.models.loc[vid, "note"] == "x" and z.models.loc[vid, "augment"] == ""
    assert z.models.loc[vid, "lr"] == pytest.approx(0.02)


def test_bad_files_and_own_exports_are_named(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    save_file({"w": torch.zeros(2)}, str(root / "a.safetensors"))
    (root / "b.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(ZooError, match=r"b.safetensors: not a readable safetensors file"):
        import_public(root, "safetensors-dir", tmp_path / "o.zarr", progress=False)
    (root / "weightzoo.json").write_text("{}")
    with pytest.raises(ZooError, match="format 'safetensors'"):
        import_public(root, "safetensors-dir", tmp_path / "o.zarr", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError, match="no .safetensors files"):
        import_public(empty, "safetensors-dir", tmp_path / "q.zarr", progress=False)
