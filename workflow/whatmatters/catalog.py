"""Every kind a study may name and its settings, known without importing torch.

The registries are the source: each kind is a builder whose keyword-only parameters are its
settings (whatmatters.factors, whatmatters.data), and their modules import torch (~1-2 s and
~0.8 GB), which checking a study (`whatmatters check`, every snakemake start, every SLURM
job's start) must not pay. catalog.json is what the registries say, as plain JSON; this module
gives it back as registries with the same kinds and settings but no builders. Regenerate
it after adding or changing a kind (a test fails while it is out of date):

    python -m whatmatters catalog > workflow/whatmatters/catalog.json   (whatmatters.schema.catalog_json)
"""

from __future__ import annotations

import json
from pathlib import Path

from whatmatters.registry import Registry

PATH = Path(__file__).with_name("catalog.json")


_catalog = json.loads(PATH.read_text())
DATASETS = Registry.from_catalog("dataset", _catalog["datasets"])
SHIFTS = Registry.from_catalog("shift", _catalog["shifts"])
FACTORS = {f: Registry.from_catalog(f, r) for f, r in _catalog["factors"].items()}
