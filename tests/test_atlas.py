"""Maps of slide embeddings (gigassl.book.atlas): UMAP seeded and separating clusters, an interactive map that loads
nothing from the network and carries every slide's id, labels and thumbnail."""

import re

import numpy as np
import pandas as pd
from PIL import Image

from gigassl.book import atlas


def _clusters(n=30, seed=0):
    gen = np.random.default_rng(seed)
    centres = np.eye(3, 16) * 5
    labels = np.arange(n) % 3
    return centres[labels] + gen.normal(size=(n, 16)), labels


def test_umap_is_seeded_and_keeps_clusters_apart():
    x, labels = _clusters()
    a, b = atlas.umap_2d(x, seed=1), atlas.umap_2d(x, seed=1)
    assert a.shape == (30, 2) and np.allclose(a, b)
    means = np.stack([a[labels == k].mean(0) for k in range(3)])
    spread = max(np.linalg.norm(a[labels == k] - means[k], axis=1).mean() for k in range(3))
    gaps = min(np.linalg.norm(means[i] - means[j]) for i in range(3) for j in range(i + 1, 3))
    assert gaps > 2 * spread
    assert atlas.umap_2d(x[:8], seed=0).shape == (8, 2)  # tiny cohorts (smoke) work too


def test_interactive_map_is_offline_and_shows_each_slide(tmp_path):
    x, labels = _clusters(12)
    frame = pd.DataFrame({"slide_id": [f"s{i}" for i in range(12)], "path": "x", "center": [f"c{i % 2}" for i in range(12)],
                          "task": [f"k{k}" for k in labels]})
    for sid in frame["slide_id"][:3]:
        Image.new("RGB", (40, 30), (200, 100, 150)).save(tmp_path / f"{sid}.png")
    html = atlas.interactive_map(x[:, :2], frame, tmp_path, "task", title="t")
    sources = re.findall(r"<script[^>]*src=['\"]([^'\"]+)", html)
    assert not sources  # every script inline: nothing fetched
    assert "s11" in html and "data:image/jpeg;base64," in html and "@thumbnail" in html
