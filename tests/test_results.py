import json
import math

import numpy as np
import pytest
import torch

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
    rec.claim("c", "statement", 0.5, (0.4, 0.6), source="paper")
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["claims"][0]["reproduced"] is True and data["claims"][0]["expected"] == [0.4, 0.6]


@pytest.mark.parametrize("measured,expected,ok", [
    (0.5, (0.4, 0.6), True), (0.7, (0.4, 0.6), False), (0.4, (0.4, None), True), (0.39, (0.4, None), False),
    (-5, (None, 0), True), (float("nan"), (None, None), False),
])
def test_claim_ranges(tmp_path, measured, expected, ok):
    rec = Recorder(tmp_path, "nb", "smoke", 0)
    assert rec.claim("c", "s", measured, expected).reproduced is ok


def test_claim_needs_a_verdict_or_a_range(tmp_path):
    rec = Recorder(tmp_path, "nb", "smoke", 0)
    with pytest.raises(ShammieError, match="passed=True/False"):
        rec.claim("c", "s", 1.0, "about one")
    assert rec.claim("c", "s", 1.0, "about one", passed=False).reproduced is False
    with pytest.raises(ShammieError, match="numeric"):
        rec.claim("c", "s", "high", (0, 1))


def test_claim_replaces_same_name_and_table(tmp_path):
    rec = Recorder(tmp_path, "nb", "smoke", 0)
    rec.claim("c", "s", 1.0, (0, 2))
    rec.claim("c", "s", 3.0, (0, 2))
    assert len(rec.claims) == 1 and rec.claims[0].reproduced is False
    frame = rec.claims_frame()
    assert list(frame["reproduced"]) == ["NO"] and list(frame["expected"]) == ["0 .. 2"]


def test_write_json_atomic_leaves_no_temp_files_and_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": math.nan})  # strict JSON refuses NaN
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
