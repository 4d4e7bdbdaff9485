"""`python -m shammie runs`: list, compare, prune; `make clean` keeps the runs (issue 10, item 8)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shammie.core import ShammieError
from shammie.runner import main
from shammie.runs import compare_runs, find_run, list_runs, prune_runs

REPO = Path(__file__).resolve().parents[1]


def _claim(name, verdict, mean):
    return {"name": name, "verdict": verdict, "mean": mean, "values": [mean] * 3, "n": 3}


def _run(out: Path, name: str, status="ok", claims=(), checks=(), profile="quick") -> Path:
    folder = out / "runs" / name
    folder.mkdir(parents=True)
    summary = {"profile": profile, "run": name, "status": status, "started": "2026-12-01T10:00:00", "elapsed_s": 125.0,
               "notebooks": [{"notebook": "00_nb", "status": "ok" if status == "ok" else "failed",
                              "claims": list(claims), "checks": list(checks)}]}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _link(out: Path, name: str, target: Path) -> None:
    (out / name).symlink_to(os.path.relpath(target, out))


@pytest.fixture
def reports(tmp_path):
    out = tmp_path / "reports"
    a = _run(out, "20261201-100000-quick", claims=[_claim("acc", "reproduced", 0.9), _claim("gap", "reproduced", 0.1)],
             checks=[{"name": "perm", "ok": True, "value": 0.0}])
    b = _run(out, "20261201-110000-quick", status="failed",
             claims=[_claim("acc", "not reproduced", 0.7), _claim("gap", "reproduced", 0.1), _claim("new", "inconclusive", 1.0)],
             checks=[{"name": "perm", "ok": False, "value": 0.5}])
    c = _run(out, "20261201-120000-smoke", profile="smoke", claims=[_claim("acc", "inconclusive", 0.5)])
    _run(out, "20261201-130000-quick", status="running")
    _link(out, "latest", a)
    _link(out, "latest-quick", a)
    _link(out, "latest-smoke", c)
    return out, a, b, c


def test_list_shows_profile_status_claims_time_and_links(reports, capsys):
    out, *_ = reports
    runs = list_runs(out)
    assert [r.name for r in runs] == ["20261201-100000-quick", "20261201-110000-quick", "20261201-120000-smoke",
                                      "20261201-130000-quick"]
    assert main(["runs", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    first = next(line for line in text.splitlines() if line.startswith("20261201-100000-quick"))
    assert "quick" in first and " ok " in first and "2/0/0 of 2" in first and "1/1" in first and "2m05s" in first
    assert "latest latest-quick" in first
    assert "failed" in text and "running" in text and "smoke" in text
    assert main(["runs", "list", "--out", str(out)]) == 0 and "20261201-120000-smoke" in capsys.readouterr().out


def test_compare_lists_changed_verdicts_and_values(reports, capsys):
    out, a, b, _ = reports
    changes = compare_runs(find_run("latest", out), find_run("20261201-11", out))
    by_name = {(c["kind"], c["name"]): c for c in changes}
    assert set(by_name) == {("claim", "acc"), ("claim", "new"), ("check", "perm")}  # 'gap' did not change
    assert by_name[("claim", "acc")]["change"] == "verdict"
    assert by_name[("claim", "acc")]["a"] == {"verdict": "reproduced", "value": 0.9}
    assert by_name[("claim", "new")]["change"].startswith("only in 20261201-110000-quick")
    assert main(["runs", "compare", str(a), b.name, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 difference(s), 2 of them in a verdict" in text and "not reproduced (0.7)" in text and "FAILS" in text
    assert main(["runs", "compare", "latest", "latest", "--out", str(out)]) == 0
    assert "no claim or check changed" in capsys.readouterr().out


def test_compare_refuses_unknown_and_ambiguous_runs(reports, capsys):
    out, *_ = reports
    with pytest.raises(ShammieError, match="no run 'nope'"):
        find_run("nope", out)
    with pytest.raises(ShammieError, match="ambiguous"):
        find_run("20261201", out)
    assert main(["runs", "compare", "nope", "latest", "--out", str(out)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_prune_keeps_the_newest_linked_and_running_runs(reports, capsys):
    out, a, b, c = reports
    doomed, kept = prune_runs(1, out, dry_run=True)
    assert [r.name for r in doomed] == [b.name] and {r.name for r in kept} == {a.name, c.name}
    assert b.exists()  # dry run
    assert main(["runs", "prune", "--keep", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"deleted {b}" in text and "kept 20261201-100000-quick (latest, latest-quick)" in text
    assert "kept 20261201-130000-quick (still marked running)" in text
    assert not b.exists() and a.exists() and c.exists() and (out / "runs" / "20261201-130000-quick").exists()
    with pytest.raises(ShammieError, match="--keep"):
        prune_runs(-1, out)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_keeps_runs_unless_asked(tmp_path):
    (tmp_path / "reports" / "runs" / "20261201-100000-quick").mkdir(parents=True)
    (tmp_path / ".pytest_cache").mkdir()
    make = ["make", "-s", "-f", str(REPO / "Makefile"), "-C", str(tmp_path)]
    done = subprocess.run([*make, "clean"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reports" / "runs" / "20261201-100000-quick").exists() and not (tmp_path / ".pytest_cache").exists()
    assert "runs prune --keep" in done.stdout
    refused = subprocess.run([*make, "clean-reports"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and (tmp_path / "reports").exists()  # no terminal to ask: nothing deleted
    done = subprocess.run([*make, "clean-reports", "CONFIRM=yes"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not (tmp_path / "reports").exists()
