"""A bad command line is one line on stderr (no usage block) and exit code 2."""

import pytest

from weightzoo.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["compose", "x.zarr", "--base", "abc", "--method", "ties", "--out", "y"], "argument --base: invalid int value"),
    (["nope"], "invalid choice: 'nope'"),
    (["info"], "the following arguments are required: store"),
])
def test_bad_command_line_is_one_line_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and needle in err and len(err.splitlines()) == 1 and "usage" not in err
    assert err.startswith("weightzoo")
