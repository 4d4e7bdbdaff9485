"""The install files agree with each other: environment.yml names pyproject's packages; pins match."""

import re
import tomllib

import yaml

from conftest import REPO


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[ ;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = _pyproject()["project"]
    wanted = {_name(d) for d in project["dependencies"]} | {_name(d) for d in project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep["pip"] if not d.startswith("-e")}
        else:
            names.add(_name(dep))
    names -= {"python", "pip"}
    assert names == wanted, f"only in environment.yml: {names - wanted}; only in pyproject: {wanted - names}"
    assert "conda-forge" in env["channels"] and "pytorch" not in env["channels"]


def test_torch_pins_agree_everywhere():
    pins = {_name(line): line.strip() for line in (REPO / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    deps = {_name(d): d for d in _pyproject()["project"]["dependencies"]}
    env = (REPO / "environment.yml").read_text()
    for pkg in ("torch", "torchvision"):
        assert pins[pkg] == deps[pkg], f"{pkg}: constraints.txt and pyproject.toml disagree"
        assert pins[pkg] in env


def test_package_is_found_in_lib():
    assert _pyproject()["tool"]["setuptools"]["packages"]["find"]["where"] == ["lib"]
    import shammie

    assert shammie.__file__.startswith(str(REPO / "lib" / "shammie"))


def test_makefile_has_every_documented_target():
    text = (REPO / "Makefile").read_text()
    for target in ("help", "setup", "reports", "test", "smoke", "full", "lab", "bench", "lint", "clean"):
        assert re.search(rf"^{target}:.*## ", text, re.M), f"make {target} missing or undocumented"


def test_ci_runs_the_readme_test_command_then_the_main_job():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make reports" in readme
    assert ci.index("make test") < ci.index("make reports")


def test_xdist_groups_keep_a_module_fixture_in_one_worker(tmp_path):
    """`make test` runs `pytest -n <cores> --dist loadgroup`; our conftest marks the tests that share a
    module-scoped fixture (the smoke run of every notebook) with one xdist group, so the fixture is built
    once. Two ways this silently broke, and the smoke run of every notebook ran once per worker: our hook
    running after xdist's (which reads the groups: ours is `tryfirst`), and pytest 9, where xdist 3.8's
    rewriting of `item._nodeid` has no effect (pytest is pinned below 9). Checked end to end."""
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('repo_hook', {str(REPO / 'tests' / 'xdist_groups.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "pytest_collection_modifyitems = mod.pytest_collection_modifyitems\n"
    )
    (tmp_path / "test_shared.py").write_text(
        "import os, time, pytest\n"
        "@pytest.fixture(scope='module')\n"
        "def built():\n"
        f"    with open({str(tmp_path / 'built.txt')!r}, 'a') as f:\n"
        "        f.write(os.environ.get('PYTEST_XDIST_WORKER', '-') + '\\n')\n"
        "@pytest.mark.parametrize('i', range(8))\n"
        "def test_uses(built, i):\n"
        "    time.sleep(0.05)\n"
    )
    (tmp_path / "test_alone.py").write_text(
        "import time, pytest\n"
        "@pytest.mark.parametrize('i', range(8))\n"
        "def test_alone(i):\n"
        "    time.sleep(0.05)\n"
    )
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = (tmp_path / "built.txt").read_text().split()
    assert len(built) == 1, f"the module fixture was built {len(built)} times (workers {built}): xdist groups are not kept"
