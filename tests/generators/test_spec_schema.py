"""One way to validate specs (pydantic): shipped specs keep their hashes, JSON Schemas describe and
check YAML specs, and every error names its field path in one format."""

import json

import jsonschema
import pytest
import yaml

from generators.spec import SPEC_DIR, load_spec, shipped_spec_names
from weightzoo.cli import main
from zoo.errors import SpecError, UnknownNameError

#: The spec hashes of the shipped specs: existing stores resume only while these stay the same.
SHIPPED_HASHES = {
    "demo": "849e1408b32583fe",  # the demo grid changed to show three phases (issue 13); the hash rule did not
    "demo_quick": "0ba30766923fa3fb",
    "phase_mnist1d": "f756308bc79c815b",
    "tree_demo": "ffa8116247d48307",
    "tree_quick": "4990c972b5c0edcd",
    "tree_probex": "c7b8cba6a158d09d",
    "hparam_mnist1d": "1c39cbc1c8251fb0",
    "tree_compose": "7fb0b793c10b189a",
}


@pytest.mark.parametrize("name", sorted(SHIPPED_HASHES))
def test_shipped_spec_hashes_do_not_change(name):
    assert load_spec(name).spec_hash == SHIPPED_HASHES[name]


def test_every_shipped_spec_has_a_recorded_hash():
    assert set(shipped_spec_names()) <= set(SHIPPED_HASHES)


@pytest.mark.parametrize("kind", ["phase_grid", "model_tree"])
def test_json_schema_accepts_the_shipped_specs_and_refuses_unknown_fields(tmp_path, kind):
    out = tmp_path / f"{kind}.json"
    assert main(["schema", kind, "--out", str(out)]) == 0
    schema = json.loads(out.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    docs = [yaml.safe_load((SPEC_DIR / f"{n}.yaml").read_text()) for n in shipped_spec_names()]
    mine = [d for d in docs if d.get("kind", "phase_grid") == kind]
    assert mine
    for doc in mine:
        jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError, match="flavour"):
        jsonschema.validate({**mine[0], "flavour": "vanilla"}, schema)


@pytest.mark.parametrize("name", ["landscape", "phase_rule", "task", "catalog_entry"])
def test_other_schemas_are_valid_json_schemas(tmp_path, name, capsys):
    assert main(["schema", name]) == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(capsys.readouterr().out))


def test_unknown_field_lists_every_allowed_field_including_the_analysis_ones(tiny_spec):
    with pytest.raises(SpecError) as err:
        load_spec({**tiny_spec, "flavour": "vanilla"})
    message = str(err.value)
    assert message.startswith("field 'flavour': unknown field; allowed fields are")
    for field in ("landscape", "phases", "grid", "population"):
        assert f"'{field}'" in message


def test_a_typo_in_an_architecture_option_names_the_field(tiny_spec):
    arch = {"name": "mlp", "depth": 1, "activaton": "relu"}
    with pytest.raises(SpecError, match=r"field 'architecture\.activaton': unknown option of architecture 'mlp'; "
                                        r"its options are \[.*'activation'"):
        load_spec({**tiny_spec, "architecture": arch})


def test_a_negative_phase_threshold_is_refused(tmp_path, capsys):
    rule = tmp_path / "rule.yaml"
    rule.write_text("hessian_large: -3\n")
    from generators.phases import load_rule

    with pytest.raises(SpecError, match=r"rule\.yaml: field 'hessian_large': must be >= 0, got -3"):
        load_rule(rule)


def test_errors_in_nested_sections_name_the_full_path(tiny_spec):
    cases = [
        ({"task": {"source": "mnist1d", "train_fraction": 2}}, "field 'task.train_fraction': must be <= 1"),
        ({"landscape": {"hessian": {"iters": 0}}}, "field 'landscape.hessian.iters': must be > 0, got 0"),
        ({"phases": {"cka_high": -1}}, "field 'phases.cka_high': must be >= 0"),
        ({"optimizer": {"name": "sgd", "betas": [0.9]}}, "field 'optimizer.betas"),
        ({"checkpoints": {"count": 3, "every": 2}}, "field 'checkpoints.count': cannot be combined"),
        ({"seeds": [1, 1]}, "field 'seeds': expected distinct seeds"),
    ]
    for change, message in cases:
        with pytest.raises(SpecError) as err:
            load_spec({**tiny_spec, **change})
        assert message in str(err.value), (change, str(err.value))


def test_unknown_names_are_unknown_name_errors_with_the_choices(tiny_spec):
    with pytest.raises(UnknownNameError, match=r"field 'optimizer.name': unknown optimiser 'lion'; choose from "
                                               r"\['adam', 'adamw', 'sgd'\]"):
        load_spec({**tiny_spec, "optimizer": {"name": "lion"}})
    with pytest.raises(UnknownNameError, match=r"field 'kind': unknown kind 'forest'"):
        load_spec({**tiny_spec, "kind": "forest"})
