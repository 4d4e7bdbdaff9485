"""The workbook's look without importing seaborn, and figures drawn once (the file's PNG is what the page shows)."""

import matplotlib as mpl
import matplotlib.pyplot as plt
import pytest
from matplotlib import colors

from shammie.plotting import _png_size, save_figure, set_theme, show_saved

CODES = "bgrmyck"


def _state():
    rc = {k: v for k, v in mpl.rcParams.items() if k != "image.cmap"}
    return rc, {c: colors.to_rgb(c) for c in CODES}


def test_theme_is_seaborns_whitegrid_colorblind_notebook_look():
    """Every setting seaborn's set_theme makes (but its own colour map for images, which only seaborn can
    register), the colour cycle and the one-letter colour codes included, and nothing else."""
    sns = pytest.importorskip("seaborn")
    mapping = colors.get_named_colors_mapping()
    saved_codes = {c: mapping[c] for c in CODES}
    try:
        with mpl.rc_context():
            mpl.rcdefaults()
            sns.set_color_codes("reset")
            defaults = _state()
            set_theme()
            ours = _state()
        with mpl.rc_context():
            mpl.rcdefaults()
            sns.set_color_codes("reset")
            sns.set_theme(style="whitegrid", palette="colorblind", context="notebook",
                          rc={"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                              "axes.titleweight": "bold", "figure.autolayout": False})
            theirs = _state()
    finally:
        for c, v in saved_codes.items():
            mapping[c] = v
    assert ours[1] == theirs[1] and ours[1] != defaults[1]
    assert ours[0]["axes.prop_cycle"] == theirs[0]["axes.prop_cycle"]
    changed = {k for k in theirs[0] if theirs[0][k] != defaults[0][k]}
    assert len(changed) > 30
    assert {k: ours[0][k] for k in changed} == {k: theirs[0][k] for k in changed}
    assert ours[0] == theirs[0]


def test_png_size_reads_the_header(tmp_path):
    from PIL import Image

    fig, ax = plt.subplots(figsize=(3.1, 1.7))
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "f")
    plt.close(fig)
    assert _png_size(path.read_bytes()) == Image.open(path).size
    with pytest.raises(ValueError, match="not a PNG"):
        _png_size(b"GIF89a" + bytes(30))


def test_outside_a_notebook_the_figure_stays_open_for_show(tmp_path):
    fig, ax = plt.subplots()
    path = save_figure(fig, tmp_path / "g")
    assert show_saved(fig, path) is False and plt.fignum_exists(fig.number)
    plt.close(fig)
