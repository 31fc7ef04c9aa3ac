"""The independent-centre experiment (Table 4): which centres the linear probe is evaluated on, the SSL model
being trained on the slides of the other centres only (:func:`gigassl.manifest.ssl_slide_ids` with
``exclude_centres``).
"""

from __future__ import annotations

import pandas as pd

from ..errors import ManifestError
from ..manifest import labelled_ids
from ..seeding import rng


def centre_holdout(manifest: pd.DataFrame, seed: int = 0) -> list[str]:
    """The probe centres of the independent-centre experiment (Table 4): about half the slides, whole centres.

    Only the labelled slides count (the unlabelled pool takes no part in the probe). Centres are taken largest first (ties in a seeded random order) and each goes to the side that has fewer
    slides so far, probe side first; the SSL model of the experiment trains on the other centres only.

    Raises:
        ManifestError: no ``center`` column, or fewer than two centres.
    """
    manifest = manifest[manifest["slide_id"].astype(str).isin(set(labelled_ids(manifest)))]  # the probe's slides
    if "center" not in manifest.columns or manifest["center"].nunique() < 2:
        raise ManifestError("The independent-centre experiment needs a `center` column with at least two centres "
                            "in the manifest.")
    sizes = manifest["center"].astype(str).value_counts()
    order = rng(seed).permutation(len(sizes))
    centres = sorted(sizes.index[order], key=lambda c: -sizes[c])
    probe, train, n_probe, n_train = [], [], 0, 0
    for centre in centres:
        if n_probe <= n_train:
            probe.append(centre)
            n_probe += sizes[centre]
        else:
            train.append(centre)
            n_train += sizes[centre]
    return sorted(probe)
