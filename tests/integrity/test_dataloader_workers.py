"""Item 7: a Zoo opened from a directory, a .zarr.zip and a URL survives DataLoader workers started by
fork and by spawn, with reads in the parent before and after; each process reopens its own handles."""

import multiprocessing
import shutil

import pytest
import torch
from helpers.range_http_server import RangeHTTPServer
from torch.utils.data import ConcatDataset, DataLoader

import zoo
from zoo.archive import write_zip


class _Pid(torch.utils.data.Dataset):
    """Each item: (weights, model id, the worker's pid) — to check that workers read, not the parent."""

    def __init__(self, ds: zoo.ZooDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        import os

        x, mid = self.ds[i]
        return x, mid, os.getpid()


@pytest.fixture(scope="module")
def three_kinds(tiny_zoo_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    shutil.copytree(tiny_zoo_path, root / "tiny.zarr")
    write_zip(tiny_zoo_path, root / "tiny.zarr.zip", progress=False)
    with RangeHTTPServer(root) as server:
        yield [str(root / "tiny.zarr"), str(root / "tiny.zarr.zip"), f"{server.url}/tiny.zarr"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers_read_every_store_kind_and_the_parent_reads_before_and_after(three_kinds, tiny_zoo_path, method):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    ref = zoo.open(tiny_zoo_path)
    key = ref.models["arch_key"].iloc[0]
    zoos = [zoo.open(p) for p in three_kinds]
    before = [z.weights([0, 1]).clone() for z in zoos]  # the parent has used its handles (an HTTP session, a zip)
    datasets = [_Pid(zoo.ZooDataset(z, split="all", target=None, arch=key)) for z in zoos]
    loader = DataLoader(ConcatDataset(datasets), batch_size=2, num_workers=2, multiprocessing_context=method,
                        timeout=120)
    seen = {}
    for x, mids, pids in loader:
        for w, mid, pid in zip(x, mids.tolist(), pids.tolist()):
            assert torch.equal(w, ref.weights([mid])[0])
            seen.setdefault(mid, set()).add(pid)
    n = len(datasets[0])
    assert sum(len(d) for d in datasets) == 3 * n and len(seen) == n
    assert all(len(pids) >= 1 for pids in seen.values())
    import os

    assert all(os.getpid() not in pids for pids in seen.values())  # the workers read, not the parent
    for z, b in zip(zoos, before):  # the parent's handles still work after the workers are gone
        assert torch.equal(z.weights([0, 1]), b) and z.models.shape[0] == 8
