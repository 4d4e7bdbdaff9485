from shammie.report import format_value, write_index


def test_format_value():
    assert format_value(0.123456) == "0.1235"
    assert format_value([0.9, None]) == "≥ 0.9"
    assert format_value([None, 2]) == "≤ 2"
    assert format_value([1, 2]) == "1 .. 2"
    assert format_value(True) == "yes"
    assert format_value(list(range(10))).endswith("…]")


def test_index_shows_claims_failures_and_escapes(tmp_path):
    summary = {"run": "r1", "profile": "quick", "started": "now", "elapsed_s": 3.0, "status": "failed", "notebooks": [
        {"notebook": "01_a", "status": "ok", "error": None, "runtime_s": 2.0, "peak_memory_mb": 512.0, "html": "01_a/01_a.html",
         "parameters": {"profile": "quick", "out_dir": "/x"}, "figures": ["01_a/barrier_curves.png"],
         "claims": [{"name": "c1", "statement": "A <b>beats</b> B", "measured": 0.91, "expected": [0.9, None], "reproduced": True,
                     "source": "paper §3", "note": ""},
                    {"name": "c2", "statement": "C holds", "measured": 0.1, "expected": "> 0.5", "reproduced": False,
                     "source": "", "note": "too small a model"}]},
        {"notebook": "02_b", "status": "failed", "error": "RuntimeError: boom", "runtime_s": 1.0, "peak_memory_mb": None,
         "html": None, "parameters": {}, "claims": []},
    ]}
    path = tmp_path / "index.html"
    write_index(summary, path)
    html = path.read_text()
    assert "<b>1</b> of <b>2</b> claims reproduced" in html
    assert "A &lt;b&gt;beats&lt;/b&gt; B" in html and "<b>beats</b>" not in html
    assert "≥ 0.91" not in html and "0.91" in html and "≥ 0.9" in html
    assert "RuntimeError: boom" in html and "too small a model" in html
    assert "href='01_a/01_a.html'" in html and "512 MiB" in html
    assert "<img src='01_a/barrier_curves.png'" in html and "barrier curves" in html  # relative: works offline
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained
