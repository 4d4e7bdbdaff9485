from shammie.claims import above, below, evaluate_check, evaluate_claim, requires, within
from shammie.report import format_value, seed_strip, write_index
from shammie.results import to_jsonable


def test_format_value():
    assert format_value(0.123456) == "0.1235"
    assert format_value([0.9, None]) == "≥ 0.9"
    assert format_value([None, 2]) == "≤ 2"
    assert format_value([1, 2]) == "1 .. 2"
    assert format_value(True) == "yes"
    assert format_value(list(range(10))).endswith("…]")


def test_index_shows_claims_checks_inconclusive_failures_and_escapes(tmp_path):
    good = evaluate_claim("c1", "A <b>beats</b> B", [0.91, 0.93, 0.95], within(0.9, None), paper=0.94, source="paper §3")
    bad = evaluate_claim("c2", "C holds", [0.1, 0.12, 0.08], above(0.5), note="too small a model")
    inc = evaluate_claim("c3", "D fails beyond training", [0.5, 0.5, 0.51], below(0.6),
                         preconditions=[requires("fits inside training", 0.52, low=0.9)])
    summary = {"run": "r1", "profile": "quick", "started": "now", "elapsed_s": 3.0, "status": "failed", "notebooks": [
        {"notebook": "01_a", "status": "ok", "error": None, "runtime_s": 2.0, "peak_memory_mb": 512.0, "html": "01_a/01_a.html",
         "parameters": {"profile": "quick", "out_dir": "/x"}, "figures": ["01_a/barrier_curves.png"],
         "claims": [to_jsonable(c.to_dict()) for c in (good, bad, inc)],
         "checks": [to_jsonable(evaluate_check("k1", "gap certifies the optimum", 1e-12, (None, 1e-9)).to_dict())]},
        {"notebook": "02_b", "status": "failed", "error": "RuntimeError: boom", "runtime_s": 1.0, "peak_memory_mb": None,
         "html": None, "parameters": {}, "claims": [],
         "checks": [to_jsonable(evaluate_check("k2", "an identity that broke", 0.3, (None, 1e-9)).to_dict())]},
    ]}
    path = tmp_path / "index.html"
    write_index(summary, path)
    html = path.read_text()
    assert "<b>1</b> reproduced, <b>1</b> not reproduced, <b>1</b> inconclusive" in html
    assert "<b>1</b> of <b>2</b> hold" in html
    assert "A &lt;b&gt;beats&lt;/b&gt; B" in html and "<b>beats</b>" not in html
    assert html.count("<svg class='strip'") == 3 and html.count("<circle") == 9
    assert "badge inc'>inconclusive" in html and "precondition: fits inside training (FAILS: 0.52)" in html
    assert "gap certifies the optimum" in html and "FAILED" in html
    assert "RuntimeError: boom" in html and "too small a model" in html
    assert "href='01_a/01_a.html'" in html and "512 MiB" in html
    assert "<img src='01_a/barrier_curves.png'" in html and "barrier curves" in html  # relative: works offline
    body = html.split("<body>")[1]
    assert "<script" not in html and "http" not in body.replace("http://www.w3.org", "")  # self-contained


def test_seed_strip_places_dots_inside_the_drawing():
    c = to_jsonable(evaluate_claim("c", "s", [1.0, 2.0, 3.0], above(0.5)).to_dict())
    svg = seed_strip(c, width=100)
    xs = [float(s.split("'")[0]) for s in svg.split("cx='")[1:]]
    assert xs == sorted(xs) and all(0 < v < 100 for v in xs)
    assert "stroke='#b3261e'" in svg  # the threshold line
    assert seed_strip({"values": []}) == ""
