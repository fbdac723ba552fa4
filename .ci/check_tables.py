"""Check the demo's tables: every file present, one row per configured variant, mIoU in [0, 100]."""

import sys
from pathlib import Path

import pandas as pd
import yaml

tables = Path(sys.argv[1])
config = yaml.safe_load(Path("config.yaml").read_text())
for name in ["miou.md", "miou.csv", "per_seed.csv", "per_class.csv", "per_image.csv"]:
    assert (tables / name).is_file(), f"missing {tables / name}"
summary = pd.read_csv(tables / "miou.csv")
expected = {(d, v) for d in config["datasets"] for v in config["variants"]}
assert set(zip(summary["dataset"], summary["variant"])) == expected, summary
assert summary["mean"].between(0, 100).all(), summary
assert (summary["seeds"] == len(config["seeds"])).all(), summary
print((tables / "miou.md").read_text())
