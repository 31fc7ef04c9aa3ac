"""gigassl: the reference implementation of "Giga-SSL: Self-Supervised Learning for Gigapixel Images".

Stages (one module each): ``synth`` (synthetic cohort; its slides drawn by ``render``, written by ``tiff``),
``slides`` (OpenSlide reading), ``tiling``, ``encoders`` (tile embedder), ``moco`` (tile pre-training),
``augment`` (tile augmentation domain), ``bank`` (augmented tile embeddings), ``bankstore`` (the packed bank),
``maps`` (views, sparse maps, slide augmentation), ``sparse`` (sparse convolution backends), ``aggregators``,
``loss`` (NT-Xent), ``dist``, ``train`` (MoCo and Giga-SSL share the epoch loop of ``loop``), ``embed``,
``probe``, ``labels`` (label tables), ``splits``, ``centres`` (the independent-centre holdout), ``baselines``,
``runner`` and ``cli``. ``io`` is the only module that touches HDF5.
"""

import logging

__version__ = "0.1.0"

# a library's logging is silent until the application configures it (the CLI does; -v for more)
logging.getLogger(__name__).addHandler(logging.NullHandler())
