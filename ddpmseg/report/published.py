"""Published numbers (mIoU %) that measured tables are put beside (docs/method.md §5 and §6)."""

from __future__ import annotations

# The paper (Baranchuk et al., ICLR 2022), DDPM features: mean and std over runs.
PAPER = {
    "bedroom_28": (49.4, 1.9),
    "ffhq_34": (59.1, 1.4),
    "cat_15": (53.7, 3.3),
    "horse_21": (65.0, 0.8),
    "celeba_19": (59.9, 1.0),
    "ade_bedroom_30": (34.6, 1.7),
}

# The coursework study with the reference code, one run each, by the variant names of this project.
STUDY = {
    "baseline": {"horse_21": 63.74, "ffhq_34": 58.03, "cat_15": 57.34, "bedroom_28": 49.49},
    "baseline_11ep": {"horse_21": 64.03, "ffhq_34": 57.91, "cat_15": 57.53, "bedroom_28": 50.05},
    "augment": {"horse_21": 65.53, "ffhq_34": 57.63, "cat_15": 59.16, "bedroom_28": 48.96},
    "augment_regularize": {"horse_21": 65.20, "ffhq_34": 57.37, "cat_15": 59.53, "bedroom_28": 50.39},
    "final": {"horse_21": 65.33, "ffhq_34": 58.12, "cat_15": 59.54, "bedroom_28": 52.00},
}
