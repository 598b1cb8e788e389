import pytest
import yaml

from generators.spec import load_spec
from zoo.errors import SpecError, UnknownNameError


def _spec(tiny_spec, **changes):
    s = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tiny_spec.items()}
    for k, v in changes.items():
        s[k] = v
    return s


def test_shipped_specs_are_valid():
    demo = load_spec("demo")
    assert demo.load.param == "width" and demo.temperature.param == "batch_size"
    assert len(demo.load.values) * len(demo.temperature.values) * len(demo.seeds) == 48
    assert demo.checkpoint_epochs[0] == 0 and demo.checkpoint_epochs[-1] == demo.epochs
    load_spec("demo_quick")


def test_checkpoint_schedule_log_spaced_and_explicit(tiny_spec):
    s = load_spec(_spec(tiny_spec, epochs=100, checkpoints={"log_spaced": 3}))
    assert s.checkpoint_epochs == [0, 1, 5, 22, 100]
    s = load_spec(_spec(tiny_spec, epochs=10, checkpoints=[3, 5]))
    assert s.checkpoint_epochs == [0, 3, 5, 10]


def test_spec_from_yaml_file(tmp_path, tiny_spec):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(tiny_spec))
    assert load_spec(p).spec_hash == load_spec(tiny_spec).spec_hash


@pytest.mark.parametrize("change,field", [
    ({"architecture": {"name": "transformer9"}}, "architecture.name"),
    ({"task": {"source": "imagenet-from-mars"}}, "task"),
    ({"grid": {"load": {"param": "width", "values": []}, "temperature": {"param": "lr", "values": [0.1]}}},
     "grid.load.values"),
    ({"grid": {"load": {"param": "width", "values": [4, -1]}, "temperature": {"param": "lr", "values": [0.1]}}},
     r"grid.load.values\[1\]"),
    ({"grid": {"load": {"param": "colour", "values": [1]}, "temperature": {"param": "lr", "values": [0.1]}}},
     "grid.load.param"),
    ({"optimizer": {"name": "lion"}}, "optimizer.name"),
    ({"epochs": 0}, "epochs"),
    ({"flavour": "vanilla"}, "flavour"),
    ({"checkpoints": [0, 99]}, "checkpoints"),
])
def test_bad_spec_names_the_field(tiny_spec, change, field):
    with pytest.raises(SpecError, match=field):
        load_spec(_spec(tiny_spec, **change))


def test_unknown_dataset_and_architecture_are_unknown_name_errors(tiny_spec):
    with pytest.raises(UnknownNameError, match="choose from"):
        load_spec(_spec(tiny_spec, architecture={"name": "resnet"}))
    with pytest.raises(SpecError, match="unknown data source"):
        load_spec(_spec(tiny_spec, task={"source": "nope"}))


def test_missing_spec_file_lists_shipped_specs():
    with pytest.raises(SpecError, match="demo"):
        load_spec("no/such/spec.yaml")
