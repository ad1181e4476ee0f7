"""``callroom trunks``: an operator adds, lists and removes an account's trunks on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from callroom.cli import main


def test_add_list_change_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data-dir", str(tmp_path)]
    assert main([*base, "trunks", "add", "carrier=sip:acct:pw@192.0.2.10:5070;caller_id=pai;numbers=+15550001000"]) == 0
    assert main([*base, "trunks", "add", "carrier=sip:acct:pw@192.0.2.11;register=300"]) == 0  # changed, not added
    capsys.readouterr()
    assert main([*base, "trunks", "list"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "carrier" in line and "192.0.2.11:5060" in line and "register=yes" in line and "+15550001000" in line
    assert "pw" not in line.split("user=")[1]
    assert main([*base, "trunks", "add", "carrier=sip:192.0.2.12;colour=red"]) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err
    assert main([*base, "trunks", "remove", "carrier"]) == 0
    assert main([*base, "trunks", "remove", "carrier"]) == 1
    assert main([*base, "trunks", "list"]) == 0
    assert capsys.readouterr().out.strip() == ""
