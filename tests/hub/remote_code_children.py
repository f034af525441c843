"""What the child scripts of the pipeline remote-code tests share (run by `run_without_whitebox_hf`)."""

# The start of a child script: the saved pipeline at ``plan["folder"]`` (the script's JSON argument) loaded by remote
# code alone, none of its parts from whitebox_hf, its progress bar off. The test appends the calls it checks.
LOAD_PIPELINE = '''
import json
import sys

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file, save_file

plan = json.loads(sys.argv[1])
pipe = DiffusionPipeline.from_pretrained(plan["folder"], trust_remote_code=True)
modules = [type(pipe).__module__] + [type(c).__module__ for c in pipe.components.values() if c is not None]
assert all(m.startswith(("diffusers.", "diffusers_modules.", "transformers.")) for m in modules), modules
pipe.set_progress_bar_config(disable=True)
'''
