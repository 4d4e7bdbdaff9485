"""Shared fixtures: tiny notebooks for the runner, and the repository's paths."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from xdist_groups import pytest_collection_modifyitems  # noqa: F401  (a hook: pytest finds it here)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

PARAMS = '''profile = "quick"  # str: smoke | quick | full
seed = 0  # int: seed
device = "auto"  # str: device
out_dir = None  # str: output folder
steps = None  # int: how many steps
scale = 1.0  # float: a factor'''

BODY_OK = '''
from dataclasses import dataclass
from typing import ClassVar
import matplotlib.pyplot as plt
import shammie
from shammie.config import ProfileConfig

@dataclass(frozen=True)
class TinyConfig(ProfileConfig):
    steps: int = 3
    PROFILES: ClassVar[dict] = {"smoke": {"steps": 1}, "quick": {}, "full": {"steps": 10}}

run = shammie.start("tiny", TinyConfig, profile=profile, seed=seed, device=device, out_dir=out_dir, steps=steps)
run.record("steps", run.cfg.steps)
run.record("scaled", run.cfg.steps * scale)
fig, ax = plt.subplots()
ax.plot([0, 1], [0, run.cfg.steps])
run.savefig(fig, "line")
plt.show()
from shammie.claims import above, exact
run.claim("steps_positive", [run.cfg.steps], "steps is positive", exact(low=1), source="the fixture")
run.claim("always_false", [0.1, -0.1, 0.05], "a claim that does not reproduce", above(0.0))
run.check("steps_int", "steps is an int", isinstance(run.cfg.steps, int), ok=isinstance(run.cfg.steps, int))
run.finish()
'''

BODY_FAIL = '''
import shammie
from shammie.baselines import GettingStartedConfig
run = shammie.start("broken", GettingStartedConfig, profile=profile, seed=seed, device=device, out_dir=out_dir)
run.record("before_failure", 1)
raise RuntimeError("planted failure")
'''


def make_notebook(path: Path, body: str, params: str = PARAMS) -> Path:
    """Write a stripped notebook with a parameters cell and `body`."""
    nb = new_notebook(cells=[new_markdown_cell("# fixture"), new_code_cell(params, metadata={"tags": ["parameters"]}),
                             new_code_cell(body)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run with one torch thread, as the notebooks do: faster for small models on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_notebooks(tmp_path: Path) -> Path:
    """A folder with a working notebook `10_tiny` and a failing one `20_broken`."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    make_notebook(folder / "10_tiny.ipynb", BODY_OK)
    make_notebook(folder / "20_broken.ipynb", BODY_FAIL, params="\n".join(PARAMS.splitlines()[:4]))
    return folder
