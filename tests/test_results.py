import json
import math

import numpy as np
import pytest
import torch

from shammie.claims import within
from shammie.core import ShammieError
from shammie.results import Recorder, to_jsonable, write_json_atomic


def test_to_jsonable_converts_arrays_scalars_and_non_finite():
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": torch.tensor([1.0, float("nan")]), "d": (1, float("inf"))}
    out = to_jsonable(value)
    assert out == {"a": 0.5, "b": [0, 1, 2], "c": [1.0, "nan"], "d": [1, "inf"]}
    json.dumps(out, allow_nan=False)
    with pytest.raises(ShammieError, match="cannot record"):
        to_jsonable(object())


def test_recorder_writes_after_every_call(tmp_path):
    rec = Recorder(tmp_path, "nb", "smoke", 0, config={"x": 1})
    rec.record("acc", np.float64(0.75))
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["metrics"] == {"acc": 0.75} and data["config"] == {"x": 1}
    rec.claim("c", np.array([0.5, 0.52, 0.55]), "statement", within(0.4, 0.6), source="paper")
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["claims"][0]["verdict"] == "reproduced" and data["claims"][0]["rule"]["low"] == 0.4


def test_claim_replaces_same_name(tmp_path):
    rec = Recorder(tmp_path, "nb", "smoke", 0)
    rec.claim("c", [1.0, 1.1, 0.9], "s", within(0, 2))
    rec.claim("c", [3.0, 3.1, 2.9], "s", within(0, 2))
    assert len(rec.claims) == 1 and rec.claims[0].verdict == "not reproduced"
    with pytest.raises(ShammieError, match="statement and rule"):
        rec.claim("d", [1.0, 2.0, 3.0])


def test_write_json_atomic_leaves_no_temp_files_and_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": math.nan})  # strict JSON refuses NaN
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
