"""A notebook's HTML that needs no network: images embedded, equations typeset by an embedded MathJax.

nbconvert's `lab` template loads MathJax 2 and require.js from a CDN, so offline every equation
shows as raw TeX. `export_html` renders the same template, then replaces that MathJax with MathJax
3's single-file SVG build (`es5/tex-svg-full.js`, every TeX extension included, glyphs drawn as SVG
so no font files are fetched) shipped by the `django-static-mathjax` package (it holds MathJax's
files only; Django is not needed). The script is embedded in the page, so one HTML file is the
whole notebook: open it from disk, mail it, or move it without its folder. require.js (nothing in
a static export needs it), the widget manager (widgets cannot run in a static page; their text
fallback is shown) and mermaid's loader are dropped, and a page that still names a remote script,
stylesheet, image or frame is refused.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
from pathlib import Path

from .core import ShammieError

__all__ = ["export_html", "mathjax_script", "remote_references", "MATHJAX_PACKAGE"]

MATHJAX_PACKAGE = "django-static-mathjax"
_REQUIRE_SENTINEL = "shammie-no-requirejs.js"
_MATHJAX_BLOCK = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL)

# The same delimiters and AMS numbering as nbconvert's MathJax 2 configuration. `loader.paths`
# points at a local name so that nothing MathJax might load later (all of TeX is embedded) could
# reach its default CDN.
_MATHJAX_CONFIG = r"""<script>
window.MathJax = {
  tex: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
        processEscapes: true, processEnvironments: true, tags: "ams"},
  svg: {fontCache: "global"},
  loader: {paths: {mathjax: "./mathjax-embedded"}},
  options: {ignoreHtmlClass: "tex2jax_ignore", processHtmlClass: "tex2jax_process"}
};
</script>"""


@functools.lru_cache(maxsize=1)
def mathjax_script() -> str:
    """The text of MathJax 3's `tex-svg-full.js` from the django-static-mathjax package."""
    try:
        import mathjax
    except ImportError as err:
        raise ShammieError(f"the HTML export needs the package {MATHJAX_PACKAGE!r} (MathJax, for equations "
                           f"offline): run `make setup`, or `pip install {MATHJAX_PACKAGE}`") from err
    path = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg-full.js"
    if not path.exists():
        raise ShammieError(f"{path} is missing: reinstall {MATHJAX_PACKAGE}")
    text = path.read_text(encoding="utf-8")
    if "</script" in text.lower():  # would end the embedding <script> early
        raise ShammieError(f"{path} cannot be embedded in a page (it contains '</script')")
    return text


_REMOTE = re.compile(r"""<(script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)["']""",
                     re.IGNORECASE)


def remote_references(html: str) -> list[str]:
    """URLs of scripts, stylesheets, images or frames that `html` would fetch from another machine."""
    return [m.group(2) for m in _REMOTE.finditer(html)]


def export_html(ipynb: str | Path, html: str | Path) -> Path:
    """Render the executed notebook `ipynb` to the single self-contained file `html` (written atomically)."""
    import nbformat
    from nbconvert import HTMLExporter

    ipynb, html = Path(ipynb), Path(html)
    nb = nbformat.read(ipynb, as_version=4)
    nb.metadata.pop("widgets", None)  # the widget manager would come from a CDN; outputs keep their text
    exporter = HTMLExporter(template_name="lab", embed_images=True, require_js_url=_REQUIRE_SENTINEL,
                            # mermaid loads only for mermaid diagrams, which these notebooks do not have
                            mermaid_js_url="", mermaid_layout_elk_js_url="")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": ipynb.stem}})
    body = re.sub(rf'\s*<script src="{re.escape(_REQUIRE_SENTINEL)}"></script>', "", body)
    if len(_MATHJAX_BLOCK.findall(body)) != 1:
        raise ShammieError(f"{html.name}: nbconvert's template no longer loads MathJax as expected")
    embedded = f'{_MATHJAX_CONFIG}\n<script id="MathJax-script">{mathjax_script()}</script>'
    body = _MATHJAX_BLOCK.sub(lambda _: embedded, body)
    remote = remote_references(body)
    if remote:
        raise ShammieError(f"{html.name} would load {', '.join(remote[:3])} from the network")
    html.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{html.name}.", dir=html.parent)
    os.close(fd)
    try:
        Path(tmp).write_text(body, encoding="utf-8")
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o644 & ~mask)  # mkstemp makes 0600 files
        os.replace(tmp, html)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return html
