import json
import warnings

import pytest

import zoo
from weightzoo.cli import main
from zoo.cache import cache_dir
from zoo.catalog import (
    BUILTIN_SOURCE,
    CATALOG_ENV,
    CatalogEntry,
    CatalogOverrideWarning,
    load_catalog,
    pack,
    read_catalog_file,
)
from zoo.errors import CatalogError

SHA = "ab" * 32


def _entry(**changes):
    record = {"name": "mine", "description": "a zoo", "license": "CC-BY-4.0", "format": "zarr.zip",
              "mirrors": ["https://example.org/mine.zarr.zip"], "sha256": SHA, "size": 10}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def _write(path, *entries):
    path.write_text(json.dumps({"catalog_version": 1, "zoos": list(entries)}))
    return path


def test_builtin_catalog_ships_regenerable_demo_zoos_without_invented_archives():
    cat = load_catalog()
    assert {"demo", "demo_quick"} <= set(cat.names)
    for e in cat:
        assert e.source == BUILTIN_SOURCE and e.recipe is not None
        assert e.mirrors == () and e.sha256 is None and e.size is None  # nothing is hosted yet
    assert cat["demo_quick"].recipe == {"spec": "demo_quick"}


@pytest.mark.parametrize("changes, field", [
    ({"sha256": "xyz"}, "sha256"),
    ({"size": -3}, "size"),
    ({"size": None}, "size"),
    ({"mirrors": ["ftp://example.org/x"]}, "mirrors[0]"),
    ({"mirrors": ["hf://models/x"]}, "mirrors[0]"),
    ({"format": "rar"}, "format"),
    ({"name": "bad name"}, "name"),
    ({"license": ""}, "license"),
    ({"recipe": {"yaml": "demo"}}, "recipe"),
    ({"mirrors": [], "sha256": None, "size": None}, "mirrors"),
    ({"colour": "red"}, "colour"),
])
def test_invalid_entries_name_the_file_the_entry_and_the_field(tmp_path, changes, field):
    path = _write(tmp_path / "user.json", _entry(name="ok"), _entry(**changes))
    with pytest.raises(CatalogError) as err:
        read_catalog_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: field 'zoos[1].{field}") and "(entry '" in msg  # the file, entry and field


def test_catalog_file_errors(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        read_catalog_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CatalogError, match="bad.json: not valid JSON"):
        read_catalog_file(tmp_path / "bad.json")
    (tmp_path / "v2.json").write_text(json.dumps({"catalog_version": 2, "zoos": []}))
    with pytest.raises(CatalogError, match="catalog_version"):
        read_catalog_file(tmp_path / "v2.json")
    with pytest.raises(CatalogError, match="appears twice"):
        read_catalog_file(_write(tmp_path / "dup.json", _entry(), _entry()))


def test_entry_record_round_trip():
    e = CatalogEntry.from_record(_entry(recipe={"spec": {"name": "x"}}, homepage="https://example.org"))
    assert CatalogEntry.from_record(e.to_record()) == e
    assert e.mirrors == ("https://example.org/mine.zarr.zip",) and e.archive_suffix == ".zarr.zip"


def test_user_catalogs_from_env_then_argument_override_by_name_with_a_note(tmp_path, monkeypatch):
    env_file = _write(tmp_path / "env.json", _entry(name="demo", description="my demo"), _entry(name="extra"))
    arg_file = _write(tmp_path / "arg.json", _entry(name="extra", description="from the argument"))
    monkeypatch.setenv(CATALOG_ENV, str(env_file))
    with pytest.warns(CatalogOverrideWarning) as caught:
        cat = load_catalog(arg_file)
    notes = [str(w.message) for w in caught]
    assert any(f"'demo' from {env_file} overrides the one from {BUILTIN_SOURCE}" in n for n in notes)
    assert any(f"'extra' from {arg_file} overrides the one from {env_file}" in n for n in notes)
    assert cat["demo"].description == "my demo" and cat["extra"].description == "from the argument"
    assert cat["demo_quick"].source == BUILTIN_SOURCE
    assert {e.source for e in cat} == {BUILTIN_SOURCE, str(env_file), str(arg_file)}


def test_unknown_name_suggests_close_names_and_how_to_add_one():
    with pytest.raises(CatalogError, match=r"no zoo named 'demo_quik'.*did you mean \['demo_quick'"):
        load_catalog()["demo_quik"]


def test_cache_dir_rule(tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTZOO_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "weightzoo"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "weightzoo"
    monkeypatch.setenv("WEIGHTZOO_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_pack_is_reproducible_and_its_entry_rebuilds_the_zoo(tiny_zoo_path, tmp_path):
    a = pack(tiny_zoo_path, tmp_path / "a" / "tiny.zarr.zip", license="CC-BY-4.0", progress=False)
    b = pack(tiny_zoo_path, tmp_path / "b" / "tiny.zarr.zip", license="CC-BY-4.0", progress=False)
    assert a.sha256 == b.sha256 and a.size == (tmp_path / "a" / "tiny.zarr.zip").stat().st_size
    stored = zoo.open(tiny_zoo_path).meta
    assert a.name == "tiny" and a.recipe == {"spec": stored["spec"]} and a.format == "zarr.zip"
    t = pack(tiny_zoo_path, tmp_path / "tiny.zarr.tar", license="CC-BY-4.0", name="tiny-dir", progress=False,
             mirrors=["https://example.org/tiny.zarr.tar"])
    assert t.format == "zarr.tar" and t.mirrors == ("https://example.org/tiny.zarr.tar",)
    with pytest.raises(CatalogError, match="must end in"):
        pack(tiny_zoo_path, tmp_path / "tiny.zip", license="x", progress=False)
    assert not list(tmp_path.glob(".*partial*"))


def test_cli_pack_adds_the_entry_to_a_catalog_and_list_shows_it(tiny_zoo_path, tmp_path, capsys):
    out, cat_file = tmp_path / "tiny.zarr.zip", tmp_path / "mine.json"
    assert main(["pack", str(tiny_zoo_path), "--out", str(out), "--license", "CC0-1.0", "--name", "tiny",
                 "--mirror", "https://example.org/tiny.zarr.zip", "--add-to", str(cat_file), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    entry = read_catalog_file(cat_file)[0]
    assert printed == entry.to_record() and entry.size == out.stat().st_size
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no override: 'tiny' is new
        assert main(["download", "--list", "--catalog", str(cat_file), "--root", str(tmp_path / "cache")]) == 0
    listed = capsys.readouterr().out
    assert "tiny" in listed and "demo_quick" in listed and "CC0-1.0" in listed and "source" in listed


def test_cli_download_errors_exit_2(tmp_path, capsys):
    assert main(["download", "--root", str(tmp_path)]) == 2
    assert "give the NAME" in capsys.readouterr().err
    assert main(["download", "nope", "--root", str(tmp_path)]) == 2
    assert "weightzoo download: error: no zoo named 'nope'" in capsys.readouterr().err
    assert main(["download", "demo", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no download mirrors yet" in err and "weightzoo download demo --build" in err
