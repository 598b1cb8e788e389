"""``zoo.validation.read_yaml``: one-line errors naming the file, line and column."""

import pytest

from zoo.errors import SpecError
from zoo.validation import read_yaml


@pytest.mark.parametrize("content, needle", [
    (b"name: x\nepochs: 3\nepochs: 4\n", "line 3, column 1: duplicate key 'epochs'"),
    (b"name: {x\n", "not valid YAML: line 2, column 1: expected ',' or '}'"),
    (b"name: x\n\tepochs: 3\n", "line 2, column 1: found character '\\t' that cannot start any token"),
    (b"\xff\xfe", "not a UTF-8 text file (byte 0)"),
])
def test_bad_yaml_is_one_line_naming_file_line_and_column(tmp_path, content, needle):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as err:
        read_yaml(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and needle in message and "\n" not in message


def test_good_yaml_and_nested_mappings(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("a: {b: 1, c: [1, 2]}\nd: x\n")
    assert read_yaml(path) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
