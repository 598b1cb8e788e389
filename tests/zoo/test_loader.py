"""ZooBatchLoader: every model once per epoch, right targets and views, seeded shuffles, packed or not."""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers.store_factory import make_rich_store

import zoo
from zoo.augment import PermutationAugment
from zoo.batch_loader import ZooBatchLoader
from zoo.dataset import ZooDataset
from zoo.rechunk import pack_weights


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("loader")
    z = make_rich_store(d / "plain.zarr", n=31)  # 31 > 7: one model pending, so the plain store stays unpacked
    z = zoo.open(z.path, mode="r+")
    z.write_model(7, weights=None, metrics={}, status="failed", record={})
    shutil.copytree(d / "plain.zarr", d / "packed.zarr")
    pack_weights(d / "packed.zarr", models_per_chunk=4, progress=False)
    return zoo.open(d / "plain.zarr"), zoo.open(d / "packed.zarr")


def _arch(z):
    return z.models.loc[1, "arch_key"]


@pytest.mark.parametrize("which", [0, 1])
def test_each_model_once_with_its_weights_and_target(stores, which):
    z = stores[which]
    ds = ZooDataset(z, split="all", arch=_arch(z), target="test_acc")
    loader = ZooBatchLoader(ds, batch_size=3, block_models=4, buffer_blocks=2)
    seen, sizes = [], []
    truth = {int(m): (z.weights([int(m)])[0], z.models.loc[int(m), "test_acc"]) for m in ds.model_ids}
    by_weights = {tuple(w[:4].tolist()): m for m, (w, _) in truth.items()}
    for x, y in loader:
        sizes.append(len(y))
        for row, target in zip(x, y):
            m = by_weights[tuple(row[:4].tolist())]
            assert torch.equal(row, truth[m][0]) and target.item() == pytest.approx(truth[m][1])
            seen.append(m)
    assert sorted(seen) == sorted(truth) and len(seen) == len(ds)
    assert sizes[:-1] == [3] * (len(sizes) - 1) and len(sizes) == len(loader)


def test_shuffles_are_seeded_and_change_per_epoch(stores):
    z = stores[1]
    ds = ZooDataset(z, split="all", arch=_arch(z), target=None)

    def order(loader):
        return torch.cat([y for _, y in loader]).tolist()

    a, b = ZooBatchLoader(ds, batch_size=4, block_models=4, seed=3), ZooBatchLoader(ds, batch_size=4, block_models=4, seed=3)
    first, again = order(a), order(b)
    assert first == again and sorted(first) == sorted(ds.model_ids.tolist())
    assert order(a) != first  # the next epoch reshuffles
    plain = ZooBatchLoader(ds, batch_size=4, shuffle=False, prefetch=False)
    assert order(plain) == ds.model_ids.tolist()


def test_views_normalisation_and_transform_match_the_dataset(stores):
    z = stores[1]
    for view in ("layers", "tokens"):
        ds = ZooDataset(z, split="all", arch=_arch(z), target=None, view=view)
        x, ids = next(iter(ZooBatchLoader(ds, batch_size=5, shuffle=False)))
        item = ds[0][0]
        for k in item:
            assert torch.equal(x[k][0], item[k]), (view, k)
        assert int(ids[0]) == int(ds.model_ids[0])
    ds = ZooDataset(z, split="all", arch=_arch(z), target=None, normalize=False)
    x, ids = next(iter(ZooBatchLoader(ds, batch_size=8, shuffle=False)))
    from zoo.dataset import norm_stats
    from zoo.normalization import normalize

    stats = norm_stats(z, _arch(z))
    ds_n = ZooDataset(z, split="all", arch=_arch(z), target=None, normalize=True)
    xn, _ = next(iter(ZooBatchLoader(ds_n, batch_size=8, shuffle=False)))
    torch.testing.assert_close(xn, normalize(x, stats, z.layout(_arch(z))))
    aug = ZooDataset(z, split="all", arch=_arch(z), target=None,
                     transform=PermutationAugment(z.layout(_arch(z)), seed=0))
    xa, _ = next(iter(ZooBatchLoader(aug, batch_size=8, shuffle=False)))
    assert xa.shape == x.shape and not torch.equal(xa, x)
    np.testing.assert_allclose(np.sort(xa.numpy(), axis=1), np.sort(x.numpy(), axis=1))  # a permutation per row


def test_split_and_drop_last(stores):
    z = stores[1]
    ds = ZooDataset(z, split="train", arch=_arch(z), target=None)
    loader = ZooBatchLoader(ds, batch_size=4, drop_last=True, block_models=4)
    ids = torch.cat([y for _, y in loader]).tolist()
    assert len(ids) == len(ds) // 4 * 4 and set(ids) <= set(ds.model_ids.tolist())


def test_loading_and_packing_do_not_import_the_interchange_formats():
    code = ("import sys, zoo.rechunk, zoo.batch_loader; "
            "print(sorted(m for m in ('h5py', 'datasets', 'safetensors', 'zoo.interchange') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_block_rows_are_whole_chunks_of_about_block_bytes():
    from zoo.chunkio import BLOCK_BYTES, block_rows, row_blocks

    assert block_rows((10_000, 1, 8192), np.float32, (256, 1, 8192)) == 1024  # 8 MiB chunks: 4 in 32 MiB
    assert block_rows((10, 2, 10**8), np.float32, (1, 1, 10**8)) == 1  # one row over the budget: one chunk
    assert block_rows((100, 3), object, (7, 3)) * 3 * 8 <= BLOCK_BYTES + 7 * 3 * 8
    blocks = list(row_blocks((2500, 1, 8192), np.float32, (256, 1, 8192)))
    assert [(b.start, b.stop) for b in blocks] == [(0, 1024), (1024, 2048), (2048, 2500)]
    assert list(row_blocks((), np.int8, ())) == [Ellipsis]


def test_direct_chunk_reads_equal_zarr(stores, tmp_path):
    from zoo.chunkio import direct_reader
    from zoo.errors import CorruptChunkError

    for z in stores:
        for key in z.architectures:
            arr = z.group[f"weights/{key}"]
            reader = direct_reader(arr)
            assert reader is not None
            n = arr.shape[0]
            for start, stop in ((0, n), (1, n - 1), (n - 1, n), (2, 3)):
                out = np.empty((stop - start, arr.shape[2]), dtype=np.float32)
                reader.rows(start, stop, 2, out)
                np.testing.assert_array_equal(out, arr[start:stop, 2, :])  # NaN where never written, as zarr
    assert direct_reader(stores[0].group["metrics/test_acc"]) is None  # other shapes go through zarr
    shutil.copytree(stores[1].path, tmp_path / "c.zarr")
    z = zoo.open(tmp_path / "c.zarr")
    key = z.models.loc[1, "arch_key"]
    chunk = tmp_path / "c.zarr" / "weights" / key / "c" / "0" / "2" / "0"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    out = np.empty((4, z.group[f"weights/{key}"].shape[2]), dtype=np.float32)
    with pytest.raises(CorruptChunkError, match="fails its CRC32C checksum"):
        direct_reader(z.group[f"weights/{key}"]).rows(0, 4, 2, out)
