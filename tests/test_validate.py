"""Every override is checked against the notebook's own config before any kernel starts (issue 10, item 3)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from shammie.baselines import GettingStartedConfig
from shammie.config import ConfigError, ProfileConfig
from shammie.core import ShammieError
from shammie.runner import main, plan_run
from shammie.validate import check_cell_timeout, check_device, check_seed, notebook_config

from conftest import NOTEBOOKS, make_notebook

PARAMS = '''profile = "quick"  # str: smoke | quick | full
seed = 0  # int: seed
device = "auto"  # str: device
out_dir = None  # str: output folder
num_samples = None  # int: MNIST-1D size
epochs = None  # int: epochs'''

SETUPS = {
    "from": ("from shammie.baselines import GettingStartedConfig\n"
             "run = shammie.start('x', GettingStartedConfig, profile=profile, seed=seed, device=device,\n"
             "                    out_dir=out_dir, num_samples=num_samples, epochs=epochs)"),
    "alias": ("from shammie.baselines import GettingStartedConfig as G\n"
              "run = shammie.start('x', G, profile=profile, num_samples=num_samples, epochs=epochs)"),
    "module": ("from shammie import baselines as bl\n"
               "run = shammie.start('x', bl.GettingStartedConfig, profile=profile, num_samples=num_samples, epochs=epochs)"),
    "dotted": ("import shammie.baselines\n"
               "run = shammie.start('x', shammie.baselines.GettingStartedConfig, profile=profile, epochs=epochs,\n"
               "                    num_samples=num_samples)"),
}


def _notebook(folder, name="30_mnist", setup="from"):
    folder.mkdir(exist_ok=True)
    return make_notebook(folder / f"{name}.ipynb", "import shammie\n" + SETUPS[setup] + "\nrun.finish()", params=PARAMS)


@pytest.mark.parametrize("setup", list(SETUPS))
def test_config_class_is_found_from_the_notebooks_imports(tmp_path, setup):
    found = notebook_config(_notebook(tmp_path / "nb", setup=setup))
    assert found.config_cls is GettingStartedConfig and found.problem is None
    assert found.keywords["epochs"] == "epochs" and found.keywords["num_samples"] == "num_samples"


def test_every_workbook_notebook_names_an_importable_config():
    for nb in NOTEBOOKS:
        found = notebook_config(nb)
        assert found.config_cls is not None, f"{nb.name}: {found.problem}"


def test_a_config_defined_inside_the_notebook_is_skipped_not_fatal(tiny_notebooks, tmp_path):
    found = notebook_config(tiny_notebooks / "10_tiny.ipynb")
    assert found.config_cls is None and "defined in the notebook" in found.problem
    plan_run("smoke", only="tiny", out=tmp_path / "r", notebooks_dir=tiny_notebooks)  # still plans


@pytest.mark.parametrize("overrides,match", [
    ({"epochs": 0}, "30_mnist: epochs.* must be >= 1"),  # the theme's validate(), now before the run
    ({"num_samples": 1_000_000_000}, r"num_samples=1000000000 is past the limit 50000 \(10x 5000, the largest value of any profile"),
    ({"num_samples": 5}, "30_mnist: num_samples"),  # the theme's own validate()
    ({"device": "gpu"}, "unknown device 'gpu'"),
    ({"seed": -1}, "seed must be a non-negative int"),
])
def test_bad_values_are_refused_before_any_kernel_starts(tmp_path, overrides, match):
    folder = tmp_path / "nb"
    _notebook(folder)
    out = tmp_path / "r"
    with pytest.raises(ShammieError, match=match):
        plan_run("quick", out=out, overrides=overrides, notebooks_dir=folder)
    assert not (out / "runs").exists()


def test_good_values_pass_and_reach_the_plan(tmp_path):
    folder = tmp_path / "nb"
    _notebook(folder)
    plan = plan_run("smoke", out=tmp_path / "r", overrides={"epochs": 2, "num_samples": 600}, notebooks_dir=folder)
    assert plan.parameters["30_mnist"]["epochs"] == 2


def test_the_cli_says_which_notebook_and_exits_2(tmp_path, capsys):
    assert main(["run", "--only", "00", "--out", str(tmp_path / "r"), "-p", "epochs=0"]) == 2
    assert "00_getting_started: epochs" in capsys.readouterr().err
    assert main(["run", "--only", "00", "--out", str(tmp_path / "r"), "--seed", "-3"]) == 2
    assert "seed must be a non-negative int" in capsys.readouterr().err


@pytest.mark.parametrize("value", [0, -5])
def test_cell_timeout_must_be_positive(tiny_notebooks, tmp_path, value, capsys):
    with pytest.raises(ShammieError, match="--cell-timeout must be a positive number of seconds"):
        plan_run("smoke", only="tiny", out=tmp_path / "r", notebooks_dir=tiny_notebooks, cell_timeout=value)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--only", "00", "--out", str(tmp_path / "r"), "--cell-timeout", str(value)])
    assert exit_.value.code == 2 and "--cell-timeout: must be a positive number" in capsys.readouterr().err
    assert check_cell_timeout(None) is None and check_cell_timeout(30) == 30


def test_seed_and_device_rules():
    assert check_seed(0) == 0 and check_device("cpu") == "cpu" and check_device("CUDA:1", available_here=False)
    for bad in (-1, 1.5, True, 2**63):
        with pytest.raises(ShammieError):
            check_seed(bad)
    for bad in ("gpu", "cuda:x", 3):
        with pytest.raises(ShammieError, match="unknown device"):
            check_device(bad, available_here=False)


def test_the_same_limits_hold_inside_the_kernel():
    @dataclasses.dataclass(frozen=True)
    class Demo(ProfileConfig):
        mc_samples: int = 10
        depth: int = 0
        window: int | None = None
        PROFILES: ClassVar[dict] = {"smoke": {"mc_samples": 2}, "quick": {}, "full": {"mc_samples": 50}}
        LIMITS: ClassVar[dict] = {"window": 64}

    assert Demo.for_profile("quick", depth=7).depth == 7  # no profile value above 0: no size limit
    with pytest.raises(ConfigError, match="mc_samples=0 must be at least 1"):
        Demo.for_profile("quick", mc_samples=0)
    with pytest.raises(ConfigError, match="depth=-1 must not be negative"):
        Demo.for_profile("quick", depth=-1)
    with pytest.raises(ConfigError, match=r"mc_samples=501 is past the limit 500 \(10x 50, the largest value of any profile \(full\)\)"):
        Demo.for_profile("smoke", mc_samples=501)
    with pytest.raises(ConfigError, match=r"window=65 is past the limit 64 \(Demo.LIMITS\)"):
        Demo.for_profile("quick", window=65)
    assert Demo.for_profile("quick", mc_samples=500, window=64).mc_samples == 500
    with pytest.raises(ConfigError, match="past the limit"):
        GettingStartedConfig.for_profile("quick").replace(num_samples=10**9)


def test_an_accelerator_this_machine_lacks_is_refused_when_asked_here():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ShammieError, match="CUDA is not available here"):
        check_device("cuda", available_here=True)
    assert check_device("cuda", available_here=False) == "cuda"  # a remote worker may have one
