"""Facts about shammie.bench: targets written by bench/timing.py are collected, a run is kept as JSON with
the machine, every target is printed met or MISSED (never hidden), and `bench compare` shows what moved.
Fake runs and fake bench scripts only: nothing here asserts a timing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from shammie import bench

REPO = Path(__file__).resolve().parents[1]


def _target(name, value, goal, higher=True, script="bench_fake.py"):
    met = value >= goal if higher else value <= goal
    return {"name": name, "value": value, "goal": goal, "higher_is_better": higher, "unit": "x", "met": met,
            "script": script}


def _record(targets, started="2025-01-02T03:04:05+00:00", cpu="Fake CPU", ms=10.0, scripts=None):
    return {"format": bench.FORMAT, "started": started,
            "machine": {"cpu_model": cpu, "logical_cores": 2, "torch": "2.x", "numpy": "2.x"},
            "speed_reference": {"workload": "fake", "ms_per_step": ms, "cpu_ms_per_step": ms},
            "scripts": scripts if scripts is not None else [{"script": "bench_fake.py", "returncode": 0, "seconds": 1.0,
                                                             "targets": targets, "output": ""}],
            "targets": targets}


def _write(path: Path, record) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_timing_target_appends_one_json_line_per_target(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import timing
    finally:
        sys.path.remove(str(REPO / "bench"))
    results = tmp_path / "results.jsonl"
    monkeypatch.setenv(bench.RESULTS_ENV, str(results))
    assert timing.target("a.speed", 2.5, 1.0) is True
    assert timing.target("b.over_floor", 2.5, 2.0, higher_is_better=False) is False
    out = capsys.readouterr().out
    assert "target a.speed: 2.50x (goal >= 1x) met" in out
    assert "target b.over_floor: 2.50x (goal <= 2x) MISSED" in out
    rows = bench.read_targets(results)
    assert [(r["name"], r["met"], r["higher_is_better"]) for r in rows] == [("a.speed", True, True),
                                                                            ("b.over_floor", False, False)]
    assert bench.read_targets(tmp_path / "absent.jsonl") == []  # a script that reported nothing


def test_read_targets_names_the_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"name": "a", "value": 1, "goal": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(bench.BenchError, match="line 2: not a JSON line"):
        bench.read_targets(path)
    path.write_text('{"name": "a"}\n', encoding="utf-8")
    with pytest.raises(bench.BenchError, match="needs name, value and goal"):
        bench.read_targets(path)


def test_summary_prints_every_target_met_or_missed_and_failed_scripts():
    targets = [_target("calibration.ece", 3.2, 1.0), _target("decoder.training", 0.8, 1.0),
               _target("connectivity.ratio", 1.5, 2.0, higher=False)]
    scripts = [{"script": "bench_fake.py", "returncode": 0, "targets": targets},
               {"script": "bench_broken.py", "returncode": 1, "targets": []},
               {"script": "bench_quiet.py", "returncode": 0, "targets": []}]
    lines = bench.summary_lines(_record(targets, scripts=scripts))
    assert lines[0] == "bench targets: 2 of 3 met, 1 MISSED"
    body = "\n".join(lines)
    assert "met     calibration.ece" in body and "3.2x" in body and "(goal >= 1x)" in body
    assert "MISSED  decoder.training" in body and "0.8x" in body  # the miss shows its number
    assert "met     connectivity.ratio" in body and "(goal <= 2x)" in body
    assert "FAILED  bench_broken.py (exit status 1" in body
    assert "(no targets)  bench_quiet.py" in body


def test_write_and_load_a_run(tmp_path):
    rec = _record([_target("a", 2.0, 1.0)])
    path = bench.write_record(rec, tmp_path / "bench")
    assert path.name == "2025-01-02T03-04-05Z.json"
    assert bench.load_record(path) == rec
    assert bench.write_record(rec, tmp_path / "bench").name == "2025-01-02T03-04-05Z-2.json"  # never overwritten
    with pytest.raises(bench.BenchError, match="no bench run"):
        bench.load_record(tmp_path / "missing.json")
    bad = _write(tmp_path / "bad.json", {"targets": []})
    with pytest.raises(bench.BenchError, match="not a bench run of format"):
        bench.load_record(bad)
    (tmp_path / "garbage.json").write_text("{", encoding="utf-8")
    with pytest.raises(bench.BenchError, match="not a bench run"):
        bench.load_record(tmp_path / "garbage.json")


def test_compare_shows_what_moved_flipped_or_appeared():
    a = _record([_target("steady", 3.0, 1.0), _target("slower", 2.0, 1.0), _target("flip", 1.05, 1.0),
                 _target("floor", 1.5, 2.0, higher=False), _target("gone", 1.0, 1.0)], ms=10.0)
    b = _record([_target("steady", 3.1, 1.0), _target("slower", 1.2, 1.0), _target("flip", 0.98, 1.0),
                 _target("floor", 1.2, 2.0, higher=False), _target("new", 4.0, 1.0)], ms=20.0,
                started="2025-01-03T00:00:00+00:00", cpu="Other CPU")
    lines = bench.compare_lines(a, b, threshold=0.1)
    text = "\n".join(lines)
    assert "Fake CPU" in text and "Other CPU" in text
    assert "machine speed B/A: 0.50x" in text  # B's reference workload took twice as long
    rows = {line.split()[0]: line for line in lines if line.startswith("  ") and not line.strip().startswith("target")}
    assert "steady" not in rows  # +3%: under the threshold
    assert "-40%" in rows["slower"] and "worse" in rows["slower"]
    assert "met -> MISSED" in rows["flip"]  # a verdict that changed is shown even for a small move
    assert "-20%" in rows["floor"] and "better" in rows["floor"]  # lower is better there
    assert "only in A" in rows["gone"] and "only in B" in rows["new"]
    every = bench.compare_lines(a, b, show_all=True)
    assert any(line.strip().startswith("steady") for line in every)
    assert "no target moved" in "\n".join(bench.compare_lines(a, a))
    with pytest.raises(bench.BenchError, match="threshold"):
        bench.compare_lines(a, b, threshold=-1)


def test_cli_compare_and_summary_on_kept_runs(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    _write(out / "2025-01-01T00-00-00Z.json", _record([_target("x", 2.0, 1.0)]))
    _write(out / "2025-01-02T00-00-00Z.json", _record([_target("x", 0.5, 1.0)]))
    assert bench.main(["compare", "--out", str(out)]) == 0  # the two newest
    text = capsys.readouterr().out
    assert "2025-01-01T00-00-00Z.json" in text and "met -> MISSED" in text and "-75%" in text
    assert bench.main(["summary", "--out", str(out)]) == 0
    assert "MISSED  x" in capsys.readouterr().out
    assert bench.main(["compare", str(out / "2025-01-02T00-00-00Z.json"), str(out / "nope.json")]) == 2
    assert "no bench run at" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert bench.main(["compare", "--out", str(empty)]) == 2
    assert "needs two bench runs" in capsys.readouterr().err


FAKE_SCRIPT = '''
import sys
from timing import target
print("measuring")
target("fake.fast", 3.0, 1.0)
target("fake.slow", 0.5, 1.0)
sys.exit({code})
'''


def test_run_collects_targets_of_every_script_and_keeps_them(tmp_path, capsys):
    folder = tmp_path / "checkout" / "bench"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "bench" / "timing.py", folder / "timing.py")
    (folder / "bench_a.py").write_text(FAKE_SCRIPT.format(code=0), encoding="utf-8")
    (folder / "bench_b.py").write_text("print('no targets here')\n", encoding="utf-8")
    (folder / "helper.py").write_text("raise SystemExit('not a bench script')\n", encoding="utf-8")
    assert [p.name for p in bench.bench_scripts(folder)] == ["bench_a.py", "bench_b.py"]
    assert [p.name for p in bench.bench_scripts(folder, ["b"])] == ["bench_b.py"]
    with pytest.raises(bench.BenchError, match="matches"):
        bench.bench_scripts(folder, ["zzz"])
    record = bench.run_benchmarks(bench.bench_scripts(folder), reference=False)
    assert [t["name"] for t in record["targets"]] == ["fake.fast", "fake.slow"]
    assert {t["script"] for t in record["targets"]} == {"bench_a.py"}
    assert [s["returncode"] for s in record["scripts"]] == [0, 0]
    assert "measuring" in record["scripts"][0]["output"]
    for key in ("cpu_model", "logical_cores", "torch", "numpy", "numpy_blas", "threads"):
        assert key in record["machine"]
    assert "== bench/bench_a.py" in capsys.readouterr().out  # the scripts' output is shown as they run
    path = bench.write_record(record, tmp_path / "out")
    assert bench.load_record(path)["targets"] == record["targets"]
    # through the command line: misses are printed, not failures; --strict makes them one; a failed script is
    assert bench.main(["run", "--bench-dir", str(folder), "--out", str(tmp_path / "out"), "--no-reference"]) == 0
    text = capsys.readouterr().out
    assert "MISSED  fake.slow" in text and "met     fake.fast" in text and "kept:" in text
    assert bench.main(["run", "--bench-dir", str(folder), "--only", "a", "--out", str(tmp_path / "out"),
                       "--no-reference", "--strict"]) == 1
    (folder / "bench_c.py").write_text(FAKE_SCRIPT.format(code=3), encoding="utf-8")
    assert bench.main(["run", "--bench-dir", str(folder), "--only", "c", "--out", str(tmp_path / "out"),
                       "--no-reference"]) == 1
    assert "FAILED  bench_c.py (exit status 3" in capsys.readouterr().out


def test_speed_reference_and_machine_are_plain_json():
    ref = bench.speed_reference(rounds=1, steps=1)
    assert ref["ms_per_step"] > 0 and ref["cpu_ms_per_step"] >= 0 and "MLP" in ref["workload"]
    json.dumps(bench.machine_info())


def test_python_dash_m_shammie_bench_is_wired(tmp_path, monkeypatch, capsys):
    import runpy

    out = tmp_path / "bench"
    out.mkdir()
    _write(out / "1.json", _record([_target("x", 2.0, 1.0)]))
    _write(out / "2.json", _record([_target("x", 2.1, 1.0)]))
    monkeypatch.setattr(sys, "argv", ["shammie", "bench", "compare", str(out / "1.json"), str(out / "2.json"), "--all"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("shammie", run_name="__main__")  # what `python -m shammie bench compare A B --all` runs
    assert exit_.value.code == 0
    assert "+5%" in capsys.readouterr().out
