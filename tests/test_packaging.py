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
