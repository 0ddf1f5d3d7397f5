"""Write a figure as PNG and, optionally, as vector PDF/SVG for papers and slides."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402

from .._validate import check_bool, check_choice, check_int  # noqa: E402
from .style import style  # noqa: E402

FORMATS = ("png", "pdf", "svg")
# no creation date in the files: the same figure gives the same bytes (clean diffs in git)
_METADATA = {"pdf": {"CreationDate": None, "Creator": "neuroq.viz"}, "svg": {"Date": None, "Creator": "neuroq.viz"},
             "png": {"Software": "neuroq.viz"}}
# suffixes of files matplotlib or PIL could mean that save does not write (a path ending in one is refused)
_OTHER = ("jpg", "jpeg", "gif", "tif", "tiff", "bmp", "webp", "eps", "ps", "svgz", "pgf", "raw", "rgba", "html")


def save(fig, path: Union[str, os.PathLike], formats: Optional[Sequence[str]] = None, dpi: int = 200,
         close: bool = True) -> list:
    """Write ``fig`` (a ``Figure``, or an ``Axes`` of one) to ``path`` in each of ``formats``.

    PNG is a bitmap at ``dpi``; PDF and SVG are vector files (text kept as text, see
    :mod:`neuroq.viz.style`) that scale to any size in a paper or on a slide.

    Args:
        fig: the figure (or an axes; its figure is saved).
        path: file name; its suffix is replaced by each format's (``figs/raster`` or
            ``figs/raster.png`` with ``formats=("png", "pdf")`` write ``figs/raster.png`` and
            ``figs/raster.pdf``). Missing folders are created.
        formats: any of ``"png"``, ``"pdf"``, ``"svg"``; default: the suffix of ``path``, else ``png``.
        dpi: resolution of bitmap output (and of bitmap parts in vector files).
        close: close the figure afterwards (frees its memory in loops).
    Returns:
        the list of ``Path`` written, in ``formats`` order.

    Example::

        viz.save(viz.raster(rec), "figs/raster", formats=("png", "pdf"))
    """
    fig = getattr(fig, "figure", fig)
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure or Axes, got {type(fig).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name (str or os.PathLike), got {type(path).__name__}")
    dpi = check_int("dpi", dpi, ge=1)
    check_bool("close", close)
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if formats is None:
        formats = (suffix,) if suffix in FORMATS else ("png",)
    elif isinstance(formats, str):
        formats = (formats,)
    if suffix in _OTHER:
        raise ValueError(f"path {str(path)!r} ends in .{suffix}, which save does not write: name a .png, .pdf or .svg "
                         "file, or give formats")
    formats = [check_choice("formats entry", str(f).lower().lstrip("."), FORMATS) for f in formats]
    if not formats:
        raise ValueError(f"formats must name at least one of {FORMATS}")
    twice = sorted({f for f in formats if formats.count(f) > 1})
    if twice:
        raise ValueError(f"formats names {', '.join(repr(f) for f in twice)} twice: {formats}")
    stem = path.with_suffix("") if suffix in FORMATS else path
    if stem.name in ("", ".", ".."):
        raise ValueError(f"path {str(path)!r} names a folder, not a file: give a file name, e.g. 'figs/raster'")
    for parent in stem.parents:  # the nearest folder that exists must be one, not a file
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"path {str(path)!r}: {str(parent)!r} is a file, not a folder")
            break
    for fmt in formats:
        out = stem.with_name(stem.name + "." + fmt)
        if out.is_dir():
            raise ValueError(f"path {str(path)!r}: {str(out)!r} is a folder, not a file")
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with style():
        for fmt in formats:
            out = stem.with_name(stem.name + "." + fmt)
            fig.savefig(out, format=fmt, dpi=dpi, bbox_inches="tight", metadata=_METADATA[fmt])
            written.append(out)
    if close:
        plt.close(fig)
    return written
