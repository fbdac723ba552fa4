"""Put this checkout's root first on sys.path, so scripts import its ddpmseg package even inside a
``--sdm conda`` environment that holds only the dependencies (Snakemake puts this folder on sys.path)."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
