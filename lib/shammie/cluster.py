"""Dask workers as Slurm or PBS batch jobs (the optional extra: `pip install -e ".[cluster]"`).

`--cluster slurm --cluster-config cluster.yaml` builds a dask-jobqueue cluster from a small YAML:

    queue: gpu              # partition (Slurm) or queue (PBS)
    account: my-project     # optional
    gpus: 1                 # per job (one notebook per job)
    cores: 4                # CPUs per job (the worker runs one notebook at a time)
    memory: 32GB            # per job
    walltime: "04:00:00"
    python: /home/me/shammie/.venv/bin/python   # the virtualenv's python on the compute nodes
    max_jobs: 8             # at most this many jobs at once (default 8)
    prologue: ["module load cuda/12.4"]          # optional shell lines before the worker starts
    extra_directives: ["--constraint=a100"]      # optional extra #SBATCH / #PBS lines
    interface: ib0          # optional network interface of the nodes
    local_directory: /tmp   # optional scratch folder on the nodes

The runner scales the cluster to one job per notebook (at most `max_jobs`). Workers need the
workbook installed (same python) but no shared filesystem: results come back to the client.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from .core import ShammieError

__all__ = ["load_cluster_config", "make_cluster", "job_script", "KINDS"]

KINDS = ("slurm", "pbs")
_KEYS: dict[str, tuple[type, ...]] = {
    "queue": (str,), "account": (str,), "gpus": (int,), "cores": (int,), "memory": (str,), "walltime": (str,),
    "python": (str,), "max_jobs": (int,), "prologue": (list,), "extra_directives": (list,), "interface": (str,),
    "local_directory": (str,),
}
_DEFAULTS = {"gpus": 0, "cores": 1, "memory": "8GB", "walltime": "02:00:00", "max_jobs": 8, "prologue": [],
             "extra_directives": []}
THREAD_LINES = [f"export {v}=1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")]


def load_cluster_config(path: str | Path | None) -> dict[str, Any]:
    """Read and check the YAML (unknown keys, wrong types and bad values are errors that say so)."""
    import yaml

    if path is None:
        raise ShammieError("--cluster needs --cluster-config FILE.yaml (queue, gpus, memory, walltime, python; "
                           "see the README)")
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ShammieError(f"cannot read the cluster config {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise ShammieError(f"the cluster config {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ShammieError(f"the cluster config {path} must be a mapping of keys to values")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ShammieError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}")
    for key, value in data.items():
        if not isinstance(value, _KEYS[key]) or isinstance(value, bool):
            raise ShammieError(f"{path}: {key}={value!r} should be {_KEYS[key][0].__name__}")
    cfg = {**_DEFAULTS, **data}
    for key in ("gpus", "cores", "max_jobs"):
        if cfg[key] < (0 if key == "gpus" else 1):
            raise ShammieError(f"{path}: {key} must be {'>= 0' if key == 'gpus' else '>= 1'}, got {cfg[key]}")
    if not re.fullmatch(r"(\d+-)?\d{1,3}:\d\d(:\d\d)?", cfg["walltime"]):
        raise ShammieError(f"{path}: walltime {cfg['walltime']!r} should look like 04:00:00")
    try:
        from dask.utils import parse_bytes

        parse_bytes(cfg["memory"])
    except (ValueError, TypeError) as err:
        raise ShammieError(f"{path}: memory {cfg['memory']!r} should look like 32GB") from err
    cfg.setdefault("python", sys.executable)
    return cfg


def make_cluster(kind: str, config: str | Path | dict[str, Any] | None):
    """A dask-jobqueue cluster (not scaled: nothing is submitted yet), with `shammie_max_jobs` set."""
    if kind not in KINDS:
        raise ShammieError(f"unknown cluster kind {kind!r}: choose one of {', '.join(KINDS)}")
    cfg = config if isinstance(config, dict) else load_cluster_config(config)
    try:
        from dask_jobqueue import PBSCluster, SLURMCluster
    except ImportError as err:
        raise ShammieError("--cluster needs dask-jobqueue: pip install -e '.[cluster]'") from err
    common: dict[str, Any] = {
        "cores": 1, "processes": 1,  # one single-thread worker per job: one notebook at a time
        "memory": cfg["memory"], "walltime": cfg["walltime"], "queue": cfg.get("queue"), "account": cfg.get("account"),
        "python": cfg["python"], "job_script_prologue": THREAD_LINES + list(cfg["prologue"]),
        "interface": cfg.get("interface"), "local_directory": cfg.get("local_directory"),
        "scheduler_options": {"dashboard_address": ":0"},  # any free port: several runs may share a login node
    }
    extra = list(cfg["extra_directives"])
    if kind == "slurm":
        if cfg["gpus"]:
            extra.insert(0, f"--gres=gpu:{cfg['gpus']}")
        cluster = SLURMCluster(job_cpu=cfg["cores"], job_extra_directives=extra, **common)
    else:
        spec = f"select=1:ncpus={cfg['cores']}:mem={_pbs_mem(cfg['memory'])}"
        if cfg["gpus"]:
            spec += f":ngpus={cfg['gpus']}"
        cluster = PBSCluster(resource_spec=spec, job_extra_directives=extra, **common)
    cluster.shammie_max_jobs = cfg["max_jobs"]
    return cluster


def _pbs_mem(memory: str) -> str:
    from dask.utils import parse_bytes

    return f"{max(1, -(-parse_bytes(memory) // 2**30))}GB"


def job_script(kind: str, config: str | Path | dict[str, Any] | None) -> str:
    """The batch script one worker job would be submitted with (nothing is submitted)."""
    cluster = make_cluster(kind, config)
    try:
        return cluster.job_script()
    finally:
        cluster.close()
