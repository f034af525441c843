#!/usr/bin/env python
"""Class-conditional sampling with `WhiteboxFlowPipeline` (a diffusers `DiffusionPipeline`): load a saved pipeline
folder, draw one image per class with classifier-free guidance, and save them side by side as a PNG.

    python examples/diffusion_pipeline_inference.py runs/flow_pixel_crate/pipeline --out samples.png
    python examples/diffusion_pipeline_inference.py --tiny   # a tiny random CRATE-denoiser pipeline
"""

import argparse

import torch
from diffusers.utils import make_image_grid

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("model_dir", nargs="?", help="a folder written by WhiteboxFlowPipeline.save_pretrained")
parser.add_argument("--tiny", action="store_true", help="build and save a tiny random pipeline instead")
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--guidance_scale", type=float, default=3.0)
parser.add_argument("--out", help="PNG to write")
args = parser.parse_args()
from tiny_models import tiny_flow_pipeline

from whitebox_hf.pipelines import WhiteboxFlowPipeline

pipe = WhiteboxFlowPipeline.from_pretrained(
    tiny_flow_pipeline() if args.tiny else args.model_dir or parser.error("give a pipeline folder or --tiny"))
names = [(pipe.config.id2label or {}).get(c, str(c)) for c in range(pipe.config.num_classes)]
images = pipe(list(range(len(names))), num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
              generator=torch.Generator().manual_seed(0), output_type="pil").images
print(f"{len(images)} images of size {images[0].size}, classes {names}")
if args.out:
    make_image_grid(images, rows=1, cols=len(images)).save(args.out)
    print(f"wrote {args.out}")
