"""Sweeps (grid parsing, validation before anything runs, aggregation of claims over seeds, the
report) and the Slurm/PBS job scripts; running a sweep for real is in test_distributed.py."""

from __future__ import annotations

import math

import pytest

from shammie.core import ShammieError
from shammie.sweep import aggregate, parse_axis, plan_sweep, plot_sweep, write_sweep_report


def test_parse_axis():
    assert parse_axis("seed=0..4") == ("seed", [0, 1, 2, 3, 4])
    assert parse_axis("width=32,128,512") == ("width", [32, 128, 512])
    assert parse_axis("lr=0.1") == ("lr", [0.1])
    assert parse_axis("widths=[32, 64]") == ("widths", [[32, 64]])  # a bracketed value is one value
    assert parse_axis("mode=a,b") == ("mode", ["a", "b"])
    for bad, match in [("seed", "name=values"), ("seed=4..1", "empty"), ("w=1,,2", "empty value"),
                       ("w=1,1", "repeated"), ("2x=1", "not a parameter name")]:
        with pytest.raises(ShammieError, match=match):
            parse_axis(bad)


def test_grid_is_validated_before_anything_runs(tiny_notebooks, tmp_path):
    out = tmp_path / "r"
    plan = plan_sweep("tiny", ["seed=0..2", "scale=1,2"], "smoke", out, notebooks_dir=tiny_notebooks)
    assert len(plan.cells) == 6 and plan.cells[1] == {"seed": 0, "scale": 2}
    assert plan.parameters[1]["scale"] == 2.0 and plan.parameters[1]["profile"] == "smoke"  # checked and converted
    assert len(set(plan.labels)) == 6 and plan.parameters[0]["out_dir"].startswith(str(plan.sweep_dir))
    for axes, match in [(["stepz=1,2"], "unknown parameter 'stepz'.*did you mean 'steps'"),
                        (["seed=0..1", "steps=1,two"], "steps='two' has the wrong type"),
                        (["seed=0", "seed=1"], "given twice"), ([], "at least one axis")]:
        with pytest.raises(ShammieError, match=match):
            plan_sweep("tiny", axes, "smoke", out, notebooks_dir=tiny_notebooks)
    with pytest.raises(ShammieError, match="one notebook"):
        plan_sweep("*", ["seed=0..1"], "smoke", out, notebooks_dir=tiny_notebooks)
    with pytest.raises(ShammieError, match="unknown profile"):
        plan_sweep("tiny", ["seed=0..1"], "quik", out, notebooks_dir=tiny_notebooks)
    assert not out.exists() or not (out / "sweeps").exists()


def _cell(seed, width, gain, verdict, status="ok"):
    claims = [] if status != "ok" else [
        {"name": "gain", "statement": "A beats B", "mean": gain, "verdict": verdict,
         "rule": {"direction": "above", "threshold": 0.0, "text": "the 95% t interval of the mean above 0"}},
        {"name": "exact", "statement": "an identity-like claim", "mean": 1.0, "verdict": "reproduced", "rule": {}}]
    return {"notebook": "02_b", "key": f"c-{seed}-{width}", "status": status, "cell": {"seed": seed, "width": width},
            "claims": claims, "runtime_s": 1.0, "metrics": {"acc": gain}}


def test_aggregation_over_seeds_matches_a_hand_computation(tmp_path):
    cells = [_cell(0, 32, 0.10, "reproduced"), _cell(1, 32, 0.30, "reproduced"), _cell(2, 32, -0.05, "not reproduced"),
             _cell(0, 128, 0.50, "reproduced"), _cell(1, 128, 0.70, "inconclusive"),
             _cell(2, 128, 0.0, "", status="failed")]
    rows = {(r["claim"], r["group_label"]): r for r in aggregate(cells, over="seed")}
    assert list(rows) == [("gain", "width=32"), ("gain", "width=128"), ("exact", "width=32"), ("exact", "width=128")]
    g = rows[("gain", "width=32")]
    values = [0.10, 0.30, -0.05]
    m = sum(values) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / 2)
    half = 4.302652729749464 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert (g["k"], g["n"], g["not_run"]) == (2, 3, 0)
    assert g["mean"] == pytest.approx(m) and g["ci"] == pytest.approx([m - half, m + half])
    assert [s["seed"] for s in g["seeds"]] == [0, 1, 2]
    w = rows[("gain", "width=128")]  # one seed inconclusive, one notebook failed
    assert (w["k"], w["n"], w["inconclusive"], w["not_run"]) == (1, 2, 1, 1)
    assert w["mean"] == pytest.approx(0.6) and w["ci"] == pytest.approx([0.6 - 12.706204736 * 0.1, 0.6 + 12.706204736 * 0.1])
    assert rows[("exact", "width=32")]["ci"] == [1.0, 1.0]
    single = aggregate([_cell(0, 32, 0.1, "reproduced")])
    assert single[0]["ci"] is None and single[0]["n"] == 1  # no interval from one value

    summary = {"notebook": "02_b", "sweep": "s", "profile": "quick", "grid": {"seed": [0, 1, 2], "width": [32, 128]},
               "status": "failed", "notebooks": cells, "aggregate": list(rows.values()), "over": "seed"}
    fig = plot_sweep(summary["aggregate"], tmp_path / "claims_over_grid.png")
    write_sweep_report(summary, tmp_path / "index.html", fig.name)
    page = (tmp_path / "index.html").read_text()
    assert "2 of 3" in page and "1 of 2" in page and "1 not run" in page and "claims_over_grid.png" in page
    assert page.count("<svg class='strip'") == 4 and fig.stat().st_size > 5000
    assert "<script" not in page


SAMPLE_YAML = """
queue: gpu
account: proj42
gpus: 2
cores: 4
memory: 32GB
walltime: "04:00:00"
python: /opt/venvs/shammie/bin/python
prologue: ["module load cuda/12.4"]
"""


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_cluster_job_script_asks_for_gpus_memory_and_python(kind, tmp_path):
    pytest.importorskip("dask_jobqueue")
    from shammie.cluster import job_script

    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(SAMPLE_YAML)
    script = job_script(kind, cfg)
    assert "/opt/venvs/shammie/bin/python -m distributed.cli.dask_worker" in script and "--nthreads 1" in script
    assert "module load cuda/12.4" in script and "export OMP_NUM_THREADS=1" in script
    if kind == "slurm":
        assert "#SBATCH --gres=gpu:2" in script and "#SBATCH --mem=30G" in script  # 32 GB = 29.8 GiB, rounded up
        assert "#SBATCH --cpus-per-task=4" in script and "#SBATCH -p gpu" in script and "#SBATCH -A proj42" in script
        assert "#SBATCH -t 04:00:00" in script
    else:
        assert "#PBS -l select=1:ncpus=4:mem=30GB:ngpus=2" in script and "#PBS -q gpu" in script
        assert "#PBS -l walltime=04:00:00" in script


def test_cluster_config_errors(tmp_path):
    from shammie.cluster import load_cluster_config

    cfg = tmp_path / "c.yaml"
    for text, match in [("gpu: 1", "unknown key.*gpu"), ("gpus: two", "gpus='two' should be int"),
                        ("walltime: four hours", "walltime"), ("memory: lots", "memory"), ("- a", "mapping")]:
        cfg.write_text(text)
        with pytest.raises(ShammieError, match=match):
            load_cluster_config(cfg)
    with pytest.raises(ShammieError, match="cannot read"):
        load_cluster_config(tmp_path / "missing.yaml")
    with pytest.raises(ShammieError, match="--cluster-config"):
        load_cluster_config(None)
