"""A real browser reads a report with the network blocked (issue 10, item 2 and its browser test).

Headless Chromium (the system's, driven by Playwright's Python package; no browser download)
opens the run's index.html and an executed notebook's HTML from disk. Every request that is not
for a local file is blocked and recorded; the test checks that the claims table and the figures
are visible, that MathJax typeset every equation (its output present, no raw `$...$` or TeX
commands left in the text), and that no request left the machine.

Without a Chromium the tests are skipped, unless SHAMMIE_REQUIRE_BROWSER=1 (CI sets it, after
installing Debian's chromium). SHAMMIE_CHROMIUM names the browser binary when it is not on PATH.
SHAMMIE_BROWSER_REPORT=<run folder> also checks a real run (CI: reports/latest after `make reports`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from conftest import BODY_OK, PARAMS

pytestmark = pytest.mark.slow

MATHS = r"""# A fixture with equations

Inline maths $\alpha^2 + \beta_i$ and $\sigma(z)$, and a display:

$$\mathcal{L}(\theta) = -\frac{1}{n}\sum_{i=1}^{n} \log p_\theta(y_i \mid x_i)$$

\begin{align}
T^\star &= \arg\min_T \mathrm{NLL}(z / T)
\end{align}

Code spans stay as typed: `cost = $5`."""

_RAW_TEX = re.compile(r"\$[^\s$][^$]*\$|\\(?:frac|sum|alpha|beta|sigma|mathcal|begin|log|arg|mathrm)\b|\\\(|\\\[")


# the text of the rendered markdown, without code spans and blocks (where a `$` is just a character)
_PROSE_JS = """() => Array.from(document.querySelectorAll('.jp-RenderedMarkdown')).map(el => {
    const c = el.cloneNode(true);
    c.querySelectorAll('code, pre, script, style').forEach(n => n.remove());
    return c.textContent; }).join('\\n')"""


def _chromium() -> str | None:
    env = os.environ.get("SHAMMIE_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _need(what: str) -> None:
    if os.environ.get("SHAMMIE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test needs {what} (SHAMMIE_REQUIRE_BROWSER=1)")
    pytest.skip(f"needs {what}")


@pytest.fixture(scope="module")
def browser():
    binary = _chromium()
    if binary is None:
        _need("a Chromium (apt-get install chromium, or SHAMMIE_CHROMIUM=/path)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("the playwright package (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=binary, headless=True,
                              args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND"])
        yield b
        b.close()


class Page:
    """A page opened from disk with every non-local request blocked and recorded."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        self.left: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else self.left.append(r.url))
        self.page.goto(path.resolve().as_uri(), wait_until="load")

    def _route(self, route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            route.abort()

    def close(self) -> None:
        self.context.close()


def _images_visible(page, selector: str) -> int:
    images = page.locator(selector)
    n = images.count()
    for i in range(n):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle(), timeout=10_000)
        assert img.is_visible()  # loaded first: an image not yet loaded has no width
    return n


def _wait_for_mathjax(page) -> None:
    page.wait_for_function("() => window.MathJax && window.MathJax.startup && window.MathJax.startup.promise",
                           timeout=30_000)
    done = page.evaluate("""() => Promise.race([MathJax.startup.promise.then(() => true),
                                             new Promise(r => setTimeout(() => r(false), 30000))])""")
    assert done, "MathJax did not finish typesetting within 30 s"


def check_index(browser, index: Path, claim_names: list[str] | None = None) -> None:
    view = Page(browser, index)
    try:
        page = view.page
        table = page.locator("table.claims")
        assert table.is_visible()
        rows = table.locator("tr")
        assert rows.count() >= 2
        text = table.inner_text()
        for name in claim_names or []:
            assert name in text
        assert _images_visible(page, ".gallery img") >= 1, "the index shows no figure"
        assert view.left == [], f"requests left the machine: {view.left}"
    finally:
        view.close()


def check_notebook_html(browser, html: Path, min_equations: int, screenshot: Path | None = None) -> None:
    view = Page(browser, html)
    try:
        page = view.page
        _wait_for_mathjax(page)
        rendered = page.locator("mjx-container.MathJax svg")
        assert rendered.count() >= min_equations, f"{rendered.count()} equations typeset, {min_equations} expected"
        assert rendered.first.is_visible()
        assert page.locator("mjx-merror, [data-mjx-error]").count() == 0, "MathJax reported a TeX error"
        prose = page.evaluate(_PROSE_JS)
        raw = _RAW_TEX.findall(prose)
        assert not raw, f"raw TeX left in the page: {raw[:5]}"
        assert _images_visible(page, ".jp-OutputArea-output img") >= 1, "the notebook shows no figure"
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=False)
        assert view.left == [], f"requests left the machine: {view.left}"
    finally:
        view.close()


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    """The runner executes a notebook with equations, a figure, claims and a check."""
    from shammie.runner import execute_plan, plan_run

    root = tmp_path_factory.mktemp("browser")
    folder = root / "notebooks"
    folder.mkdir()
    nb = new_notebook(cells=[new_markdown_cell(MATHS), new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
                             new_code_cell(BODY_OK)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, folder / "10_maths.ipynb")
    plan = plan_run("smoke", out=root / "reports", notebooks_dir=folder)
    summary = execute_plan(plan, echo=lambda *a, **k: None)
    assert summary["status"] == "ok", summary
    return plan.run_dir


def test_the_html_names_nothing_remote(fixture_run):
    from shammie.html_export import remote_references

    html = (fixture_run / "10_maths" / "10_maths.html").read_text()
    assert remote_references(html) == [] and "cdnjs" not in html and "require.min.js" not in html
    assert '<script id="MathJax-script">' in html and "MathJax.Hub.Config" not in html  # MathJax 3, embedded


def test_index_shows_claims_and_figures_offline(browser, fixture_run):
    check_index(browser, fixture_run / "index.html", ["steps is positive", "a claim that does not reproduce"])


def test_notebook_equations_render_offline(browser, fixture_run):
    check_notebook_html(browser, fixture_run / "10_maths" / "10_maths.html", min_equations=4,
                        screenshot=fixture_run / "10_maths" / "browser.png")


@pytest.mark.skipif(not os.environ.get("SHAMMIE_BROWSER_REPORT"), reason="set SHAMMIE_BROWSER_REPORT=<run folder>")
def test_a_real_report_reads_offline(browser):
    run = Path(os.environ["SHAMMIE_BROWSER_REPORT"]).resolve()
    check_index(browser, run / "index.html")
    pages = sorted(run.glob("*/*.html"))
    assert pages, f"no notebook HTML in {run}"
    for html in pages[:2]:
        check_notebook_html(browser, html, min_equations=1)


@pytest.mark.parametrize("notebook", [nb.stem for nb in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))])
def test_every_notebooks_equations_render_offline(browser, tmp_path, notebook):
    """Each workbook notebook's maths (exported unexecuted: no kernel needed) typesets without a TeX error."""
    from shammie.html_export import export_html

    src = Path(__file__).resolve().parents[1] / "notebooks" / f"{notebook}.ipynb"
    view = Page(browser, export_html(src, tmp_path / f"{notebook}.html"))
    try:
        _wait_for_mathjax(view.page)
        assert view.page.locator("mjx-container.MathJax svg").count() >= 1
        assert view.page.locator("mjx-merror, [data-mjx-error]").count() == 0, "MathJax reported a TeX error"
        prose = view.page.evaluate(_PROSE_JS)
        assert not _RAW_TEX.findall(prose), f"raw TeX left in the page: {_RAW_TEX.findall(prose)[:5]}"
        assert view.left == [], f"requests left the machine: {view.left}"
    finally:
        view.close()
