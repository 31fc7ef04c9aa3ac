"""Maps of slide embeddings beyond PCA: UMAP, coloured by label and centre, and an interactive map for the HTML book.

- :func:`umap_2d`: the UMAP (McInnes et al. 2018) of slide embeddings on cosine distance, seeded.
- :func:`umap_figure`: one panel per label and for the centre (a matplotlib figure).
- :func:`interactive_map`: a bokeh scatter whose hover shows the slide id, its labels, its centre and its
  thumbnail; rendered with bokeh's scripts inlined (no CDN), so the page works offline.
"""

from __future__ import annotations

import base64
import io as _bytes
import os
from pathlib import Path

import numpy as np
import pandas as pd


def umap_2d(matrix: np.ndarray, seed: int = 0, neighbours: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP of the rows of ``matrix`` (S, D) on cosine distance, seeded (``random_state``: single-threaded and
    reproducible). ``neighbours`` is capped at S - 1; under 20 rows the layout starts from a random init (the
    spectral init needs a connected graph). Shape: (S, D) -> (S, 2)."""
    import warnings

    n = len(matrix)
    with warnings.catch_warnings():
        # umap's imports pull tqdm.auto, which warns in a kernel without ipywidgets (stderr on the page); n_jobs is
        # forced to 1 by random_state; tiny graphs warn
        warnings.simplefilter("ignore")
        import umap

        reducer = umap.UMAP(n_neighbors=max(2, min(int(neighbours), n - 1)), min_dist=min_dist, metric="cosine",
                            random_state=int(seed), init="spectral" if n >= 20 else "random")
        return np.asarray(reducer.fit_transform(np.asarray(matrix, np.float32)), np.float64)


def umap_figure(points: np.ndarray, frame: pd.DataFrame, title: str = ""):
    """Sec. 4.2: UMAP points of slide embeddings (:func:`umap_2d`, (S, 2)) coloured by each label column of
    ``frame`` and by centre."""
    from .figures import embedding_map
    from ..manifest import task_columns

    columns = [*task_columns(frame), *(["center"] if "center" in frame else [])]
    return embedding_map(points, frame, columns, title=title)


def _thumbnail_uri(path: Path, px: int) -> str:
    from PIL import Image

    if not path.is_file():
        return ""
    image = Image.open(path).convert("RGB")
    image.thumbnail((px, px))
    buffer = _bytes.BytesIO()
    image.save(buffer, format="JPEG", quality=80)  # a few kB each: the page carries one per slide
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def interactive_map(points: np.ndarray, frame: pd.DataFrame, thumbnails_dir: str | os.PathLike, color_by: str,
                    title: str = "", thumbnail_px: int = 96) -> str:
    """An interactive scatter of 2-D points (S, 2), one per row of ``frame``, coloured by ``color_by``; hovering a
    point shows the slide id, every label, the centre and the slide's thumbnail (embedded as a data URI). Returns
    HTML with bokeh's JavaScript inlined: it loads nothing from the network."""
    from bokeh.embed import components
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure
    from bokeh.resources import Resources

    from ..manifest import task_columns

    columns = [*task_columns(frame), *(["center"] if "center" in frame else [])]
    values = frame[color_by].astype(str).to_numpy()
    levels = sorted(set(values))
    colour = {v: Category10_10[i % 10] for i, v in enumerate(levels)}
    data = {"x": points[:, 0], "y": points[:, 1], "slide_id": frame["slide_id"].astype(str).to_numpy(),
            "colour": [colour[v] for v in values], "group": values,
            "thumbnail": [_thumbnail_uri(Path(thumbnails_dir) / f"{s}.png", thumbnail_px) for s in frame["slide_id"]]}
    data.update({f"c_{i}": frame[c].astype(str).to_numpy() for i, c in enumerate(columns)})
    rows = "".join(f"<div><b>{c}</b>: @c_{i}</div>" for i, c in enumerate(columns))
    tooltip = (f"<div style='width:{thumbnail_px + 10}px'><div><b>@slide_id</b></div>{rows}"
               f"<img src='@thumbnail' width='{thumbnail_px}' style='margin-top:4px'></div>")
    plot = figure(title=title, width=640, height=480, tools="pan,wheel_zoom,box_zoom,reset", toolbar_location="above")
    plot.scatter("x", "y", source=ColumnDataSource(data), color="colour", legend_group="group", size=8, alpha=0.85)
    plot.add_tools(HoverTool(tooltips=tooltip))
    plot.legend.title = color_by
    plot.legend.location = "top_left"
    plot.xaxis.axis_label, plot.yaxis.axis_label = "UMAP 1", "UMAP 2"
    script, div = components(plot)
    inline = Resources(mode="inline", components=["bokeh"])  # bokeh's core only (1.3 MB; no widgets, tables, mathjax)
    return f"<div class='gigassl-interactive-map'>{inline.render_js()}{script}{div}</div>"
