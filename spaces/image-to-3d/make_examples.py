#!/usr/bin/env python
"""Write the Space's held-out examples: view 0 of the first test-split render of each family of
``load_shape_renders(128, seed=0, num_views=4, size=64)`` (the renders `training/train_cupid_flow.py` trains on,
whose test split it never sees) as ``examples/<family>.png``, and their true cameras (K in normalised uv units,
world-to-camera R, t, `camera_from_pose`) in ``examples/cameras.json``, so that the Space can score the recovered
camera of a picked example.

    PYTHONPATH=src python spaces/image-to-3d/make_examples.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from whitebox_hf.data import load_shape_renders
from whitebox_hf.models.cupid.uv_cube import camera_from_pose

HERE = Path(__file__).resolve().parent
VIEW = 0


def main() -> None:
    test = load_shape_renders(128, seed=0, num_views=4, size=64)["test"]
    cameras, seen = {}, set()
    for item in test:
        family = item["category"]
        if family in seen:
            continue
        seen.add(family)
        image = np.asarray(item["images"][VIEW], dtype=np.uint8)
        Image.fromarray(image, mode="RGB").save(HERE / "examples" / f"{family}.png")
        k, r, t = camera_from_pose(torch.tensor(item["intrinsics"][VIEW], dtype=torch.float64),
                                   torch.tensor(item["poses"][VIEW], dtype=torch.float64), image.shape[1::-1])
        cameras[family] = {"instance_seed": int(item["instance_seed"]), "view": VIEW, "intrinsics": k.tolist(),
                           "rotation": r.tolist(), "translation": t.tolist()}
    (HERE / "examples" / "cameras.json").write_text(json.dumps(cameras, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(cameras)} examples: {sorted(cameras)}")


if __name__ == "__main__":
    main()
