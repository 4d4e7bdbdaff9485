"""The notebook HTML is one self-contained file: no CDN, MathJax embedded (issue 10, item 2; the
browser test in tests/test_browser.py checks that the equations really render offline)."""

from __future__ import annotations

import os
import stat

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from shammie.html_export import export_html, mathjax_script, remote_references


def test_export_embeds_mathjax_and_names_nothing_remote(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell(r"Maths $\alpha$ and $$\sum_i x_i$$"),
                             new_code_cell("1", outputs=[new_output("execute_result", data={"text/plain": "1"},
                                                                    execution_count=1)])],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {}}}})
    src = tmp_path / "nb.ipynb"
    nbformat.write(nb, src)
    old = os.umask(0o022)
    try:
        out = export_html(src, tmp_path / "deep" / "nb.html")
    finally:
        os.umask(old)
    html = out.read_text()
    assert remote_references(html) == []
    assert "cdnjs" not in html and "unpkg" not in html and "require.min.js" not in html and "jsdelivr" not in html.split(
        '<script id="MathJax-script">')[0]
    assert html.count('<script id="MathJax-script">') == 1 and mathjax_script()[:200] in html
    assert r"$\alpha$" in html  # the TeX stays in the page for MathJax to typeset in the browser
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and not list(out.parent.glob(".*"))


def test_remote_references_finds_scripts_styles_and_images():
    page = ('<script src="https://cdn.example/x.js"></script><link rel="stylesheet" href="//cdn.example/a.css">'
            '<img src="data:image/png;base64,AAAA"><script src="local.js"></script><a href="https://example.org">x</a>')
    assert remote_references(page) == ["https://cdn.example/x.js", "//cdn.example/a.css"]
