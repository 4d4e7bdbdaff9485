"""Claims and checks: the statistics against scipy and closed forms, the verdict rules, preconditions,
prose rendered from records, and the markdown-number lint."""

import itertools
import json
import math

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from scipy import stats as st

from shammie import stats
from shammie.claims import above, below, evaluate_check, evaluate_claim, exact, requires, within
from shammie.core import ShammieError
from shammie.notebooks import typed_numbers
from shammie.prose import claim_sentence, claims_markdown, render
from shammie.results import Recorder

# --- statistics -------------------------------------------------------------------------------------

SAMPLES = [[0.1, 0.3, 0.2], [1.0, 2.0, 4.0, 8.0, 16.0], [-0.02, 0.01, 0.005, -0.001], list(np.linspace(-1, 3, 17))]


@pytest.mark.parametrize("x", SAMPLES)
@pytest.mark.parametrize("level", [0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(x, level):
    lo, hi = stats.t_interval(x, level)
    ref = st.t.interval(level, len(x) - 1, loc=np.mean(x), scale=st.sem(x))
    assert lo == pytest.approx(ref[0], rel=1e-12, abs=1e-12) and hi == pytest.approx(ref[1], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("x", SAMPLES)
@pytest.mark.parametrize("threshold", [0.0, 0.15, 2.0])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_t_test_matches_scipy(x, threshold, alternative):
    ref = st.ttest_1samp(x, threshold, alternative=alternative).pvalue
    assert stats.t_test(x, threshold, alternative) == pytest.approx(ref, rel=1e-10)


def test_paired_t_test_is_the_one_sample_test_of_differences():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(0.5, 1, size=8)
    ref = st.ttest_rel(b, a, alternative="greater").pvalue
    assert stats.t_test(b - a, 0.0, "greater") == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("x", [[0.3, -0.1, 0.7, 1.2, 0.05, 0.9], [1, 2, 3, 4, 5, 6, 7, -8], [2.5, -0.5, 1.5, 3.5, -2.0]])
@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_signed_rank_matches_scipys_exact_test(x, alternative):
    ref = st.wilcoxon(x, alternative=alternative, method="exact").pvalue
    assert stats.signed_rank_test(x, 0.0, alternative) == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("a", [[3.0, 1.0, 2.0], [2.0, 2.0, 1.0, 5.0, 2.0, 1.0], [7.0], [0.5] * 4, [1e-9, 1e-9, 3.0, -1.0]])
def test_average_ranks_equal_scipys_rankdata_with_ties(a):
    np.testing.assert_array_equal(stats._average_ranks(np.asarray(a)), st.rankdata(a))


def test_signed_rank_with_tied_magnitudes_matches_scipy():
    x = [1.0, -1.0, 2.0, 2.0, -3.0, 4.0, 4.0]  # tied magnitudes: scipy's exact method refuses ties, so enumerate
    d = np.asarray(x)
    ranks = st.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    sums = [sum(r for r, keep in zip(ranks, signs) if keep) for signs in itertools.product((0, 1), repeat=len(x))]
    expected = np.mean([w >= observed - 1e-9 for w in sums])
    assert stats.signed_rank_test(x, 0.0, "greater") == pytest.approx(expected, rel=1e-12)


def test_signed_rank_smallest_p_is_two_to_the_minus_n():
    assert stats.signed_rank_test([1, 2, 3], 0, "greater") == pytest.approx(1 / 8)
    assert stats.min_signed_rank_n(0.05) == 5


def test_bootstrap_interval_agrees_with_the_normal_closed_form():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=400)
    lo, hi = stats.bootstrap_interval(x, 0.95, n_boot=20_000)
    half = st.norm.ppf(0.975) * x.std(ddof=0) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - half, abs=0.03) and hi == pytest.approx(x.mean() + half, abs=0.03)
    assert stats.bootstrap_interval(x, 0.95) == stats.bootstrap_interval(x, 0.95)  # deterministic


def test_statistics_refuse_bad_input():
    with pytest.raises(ShammieError, match="non-finite"):
        stats.t_interval([1.0, float("nan")])
    with pytest.raises(ShammieError, match="at least 2"):
        stats.t_interval([1.0])
    with pytest.raises(ShammieError, match="level"):
        stats.t_interval([1.0, 2.0], level=1.5)


# --- verdicts ---------------------------------------------------------------------------------------


def test_ties_never_pass_improves():
    for test in ("t_ci", "bootstrap_ci", "t_test", "every"):
        rec = evaluate_claim("tie", "A improves on B", [0.0, 0.0, 0.0, 0.0], above(0.0, test=test))
        assert rec.verdict == "not reproduced", test
    assert evaluate_claim("tie", "s", [0.5], exact(above=0.5)).verdict == "not reproduced"


def test_an_effect_inside_the_noise_is_not_reproduced_though_its_mean_is_positive():
    rec = evaluate_claim("ece", "LATES lowers ECE", [0.01, -0.008, 0.012, -0.009, 0.002], above(0.0))
    assert rec.mean > 0 and rec.ci[0] < 0 and rec.verdict == "not reproduced"
    rec = evaluate_claim("ece", "LATES lowers ECE", [0.01, 0.012, 0.011, 0.009, 0.013], above(0.0))
    assert rec.verdict == "reproduced" and rec.n == 5


def test_minimum_effect_and_direction():
    vals = [0.06, 0.07, 0.065]
    assert evaluate_claim("c", "s", vals, above(0.05)).verdict == "reproduced"
    assert evaluate_claim("c", "s", vals, above(0.065)).verdict == "not reproduced"
    assert evaluate_claim("c", "s", [-v for v in vals], below(-0.05)).verdict == "reproduced"
    assert evaluate_claim("c", "s", vals, below(0.0)).verdict == "not reproduced"


def test_within_rules():
    vals = [0.31, 0.32, 0.315]
    assert evaluate_claim("c", "s", vals, within(0.28, 0.36)).verdict == "reproduced"
    assert evaluate_claim("c", "s", vals, within(0.28, 0.36, test="t_ci")).verdict == "reproduced"
    assert evaluate_claim("c", "s", [0.2, 0.33, 0.45], within(0.28, 0.36, test="t_ci")).verdict == "not reproduced"
    assert evaluate_claim("c", "s", [0.27, 0.33, 0.35], within(0.28, 0.36, test="every")).verdict == "not reproduced"


def test_failed_precondition_gives_inconclusive_not_a_verdict():
    pre = requires("fits the training lengths (answer accuracy)", [0.52, 0.55, 0.5], low=0.9)
    rec = evaluate_claim("beyond", "fails beyond the training lengths", [0.5, 0.49, 0.51], below(0.65), preconditions=[pre])
    assert rec.verdict == "inconclusive" and "precondition" in rec.reason and not rec.preconditions[0]["holds"]
    ok = requires("fits", [0.95, 0.99, 0.97], low=0.9)
    assert evaluate_claim("b", "s", [0.5, 0.49, 0.51], below(0.65), preconditions=[ok]).verdict == "reproduced"


def test_too_few_seeds_is_inconclusive_and_refused_outside_smoke(tmp_path):
    rec = evaluate_claim("c", "s", [0.1, 0.2], above(0.0))
    assert rec.verdict == "inconclusive" and "fewer than the 3" in rec.reason
    assert evaluate_claim("c", "s", [1, 2, 3, 4], above(0, test="signed_rank")).verdict == "inconclusive"
    smoke = Recorder(tmp_path / "s", "nb", "smoke", 0)
    assert smoke.claim("c", [0.1, 0.2], "s", above(0.0)).verdict == "inconclusive"
    quick = Recorder(tmp_path / "q", "nb", "quick", 0)
    with pytest.raises(ShammieError, match="at least 3"):
        quick.claim("c", [0.1, 0.2], "s", above(0.0))
    assert quick.claim("d", [0.5], "deterministic", exact(low=0.4)).verdict == "reproduced"


def test_rules_refuse_what_cannot_be_judged():
    with pytest.raises(ShammieError, match="mean alone"):
        above(0.0, test="mean")
    with pytest.raises(ShammieError, match="low <= high"):
        within(1, 0)
    with pytest.raises(ShammieError, match="one value"):
        evaluate_claim("c", "s", [1.0, 2.0], exact(low=0))
    with pytest.raises(ShammieError, match="Rule"):
        evaluate_claim("c", "s", [1.0, 2.0, 3.0], (0, 1))


def test_rule_text_says_what_was_tested():
    assert above(0.0).text() == "the 95% t interval of the mean strictly above 0"
    assert within(0.6, 1.0).text() == "the mean is within [0.6, 1]"
    assert below(0.1, test="every").text() == "every value strictly below 0.1"
    assert "p < 0.05" in above(0, test="t_test").text()


def test_checks():
    assert evaluate_check("gap", "duality gap certifies optimality", 1e-12, (None, 1e-9)).ok
    assert not evaluate_check("gap", "s", 1e-3, (None, 1e-9)).ok
    assert not evaluate_check("gap", "s", float("nan"), (None, 1e-9)).ok
    with pytest.raises(ShammieError, match="ok=True/False"):
        evaluate_check("c", "s", 1.0, "about one")


# --- the recorder ------------------------------------------------------------------------------------


def test_preregistered_claims_fix_the_rule_and_unmeasured_ones_are_inconclusive(tmp_path):
    rec = Recorder(tmp_path, "nb", "quick", 0)
    rec.preregister("a", "A beats B", above(0.0), paper=0.05, source="paper, Table 1")
    rec.preregister("b", "B is never measured", below(1.0))
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [p["name"] for p in data["preregistered"]] == ["a", "b"]
    with pytest.raises(ShammieError, match="preregistered"):
        rec.claim("a", [1, 2, 3], "A beats B", below(0.0))
    with pytest.raises(ShammieError, match="already registered"):
        rec.preregister("a", "again", above(1.0))
    c = rec.claim("a", [0.02, 0.021, 0.019])
    assert c.verdict == "reproduced" and c.paper == 0.05 and c.source == "paper, Table 1"
    rec.close_registrations()
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [(c["name"], c["verdict"]) for c in data["claims"]] == [("a", "reproduced"), ("b", "inconclusive")]
    assert data["claims"][1]["reason"] == "no measurement was recorded" and data["preregistered"] == []


def test_a_claim_this_profile_leaves_out_is_recorded_as_not_run_with_its_reason(tmp_path):
    rec = Recorder(tmp_path, "nb", "quick", 0)
    rec.preregister("add", "addition generalizes", above(0.9), paper=0.95, note="costly")
    with pytest.raises(ShammieError, match="say why"):
        rec.not_run("add", "  ")
    with pytest.raises(ShammieError, match="not preregistered"):
        rec.not_run("other", "off")
    rec.not_run("add", "the addition arms are off at quick (budget)")
    with pytest.raises(ShammieError, match="not preregistered"):
        rec.not_run("add", "twice")
    rec.close_registrations()
    (c,) = json.loads((tmp_path / "metrics.json").read_text())["claims"]
    assert c["verdict"] == "inconclusive" and c["n"] == 0 and c["paper"] == 0.95 and c["note"] == "costly"
    assert c["reason"] == "not run at profile 'quick': the addition arms are off at quick (budget)"


def test_metrics_json_keeps_claims_and_checks_apart(tmp_path):
    rec = Recorder(tmp_path, "nb", "smoke", 0)
    rec.claim("c", [0.1, 0.12, 0.11], "s", above(0.0), paper=(0.6, 1.0))
    rec.check("k", "an identity", 0.0, (None, 1e-9))
    data = json.loads((tmp_path / "metrics.json").read_text())
    c = data["claims"][0]
    assert c["kind"] == "claim" and c["values"] == [0.1, 0.12, 0.11] and c["n"] == 3 and len(c["ci"]) == 2
    assert c["reproduced"] is True and c["paper"] == [0.6, 1.0] and c["rule"]["text"].startswith("the 95% t")
    assert data["checks"] == [{"name": "k", "statement": "an identity", "value": 0.0, "expected": [None, 1e-9],
                               "ok": True, "note": "", "kind": "check"}]
    assert list(rec.claims_frame().columns) == ["claim", "n", "mean", "CI", "rule", "paper", "verdict"]
    assert list(rec.checks_frame()["ok"]) == ["yes"]


def test_a_failed_check_fails_the_notebook_after_writing_everything(tmp_path):
    import shammie
    from shammie.baselines import GettingStartedConfig

    run = shammie.start("nb", GettingStartedConfig, profile="smoke", out_dir=str(tmp_path), quiet=True)
    run.claim("c", [0.1, 0.2, 0.3], "s", above(0.0))
    run.check("bad", "an identity that broke", 0.5, (None, 1e-9))
    with pytest.raises(ShammieError, match="1 check\\(s\\) failed.*bad"):
        run.finish()
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["status"] == "failed"
    assert json.loads((tmp_path / "metrics.json").read_text())["checks"][0]["ok"] is False


def test_machine_dependent_numbers_stay_out_of_metrics(tmp_path):
    import shammie
    from shammie.baselines import GettingStartedConfig

    run = shammie.start("nb", GettingStartedConfig, profile="smoke", out_dir=str(tmp_path), quiet=True)
    run.record("acc", 0.5)
    run.record_time("race_seconds", {"fista": [0.01, 0.02]})
    with run.time("block"):
        pass
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert metrics["metrics"] == {"acc": 0.5}
    assert info["machine_dependent"] == {"race_seconds": {"fista": [0.01, 0.02]}} and set(info["timings_s"]) == {"block"}


# --- prose ------------------------------------------------------------------------------------------


def test_render_formats_numbers_from_values():
    assert render("acc {a:.1%} over {n} seeds, gap {g}", a=0.9251, n=3, g=0.0123456) == "acc 92.5% over 3 seeds, gap 0.01235"
    assert render("{m[mean]:.2f}", m={"mean": 0.456}) == "0.46"
    with pytest.raises(KeyError, match="pass it as a keyword"):
        render("{missing}")


def test_claim_sentence_and_table_render_every_verdict():
    good = evaluate_claim("a", "A beats B", [0.1, 0.12, 0.11], above(0.0), paper=0.2).to_dict()
    bad = evaluate_claim("b", "C | D", [0.1, -0.12, 0.11], above(0.0)).to_dict()
    inc = evaluate_claim("c", "E fails", [0.5, 0.5, 0.5], below(0.6), preconditions=[requires("fits", 0.5, low=0.9)]).to_dict()
    s = claim_sentence(good)
    assert s.startswith("**✅ reproduced** · A beats B: mean 0.11 (95% t CI") and "n = 3 seeds" in s and "paper: 0.2" in s
    assert "not reproduced" in claim_sentence(bad) and "precondition failed" in claim_sentence(inc)
    md = claims_markdown([good, bad, inc], [evaluate_check("k", "identity", 0.0, (None, 0.0)).to_dict()])
    assert "1 reproduced, 1 not reproduced, 1 inconclusive" in md and "C \\| D" in md
    assert "**Checks** (identities of correct code, not reproductions): 1 of 1 hold." in md


# --- the markdown-number lint -------------------------------------------------------------------------


def test_typed_numbers_flags_measured_figures_after_setup_only():
    nb = new_notebook(cells=[
        new_markdown_cell("# T\nThe paper reports 94% accuracy."),
        new_code_cell("run = shammie.start('x', Cfg)"),
        new_markdown_cell("Our CNN reached 0.925 and the MLP 66 %."),
        new_markdown_cell("The paper's Table 2 gives 0.93. Maths $p = 0.1$ and code `lr=0.01` are fine."),
        new_markdown_cell("We train 3 seeds for 25 epochs."),
    ])
    found = typed_numbers(nbformat.from_dict(nb))
    assert [(i, n) for i, n, _ in found] == [(2, "0.925"), (2, "66 %")]
