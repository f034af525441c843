"""Smoke test of an installed whitebox_hf (run by tools/check_package.sh in a clean virtual environment, from a
folder outside the source tree): the package comes from site-packages, and its bundled checkpoints, card template
and modeling sources (for the remote-code export) are there and work.

    python tools/package_smoke_test.py SITE_PACKAGES
"""

import json
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path


def main(site_packages: str) -> None:
    import whitebox_hf

    location = Path(whitebox_hf.__file__).resolve()
    if not location.is_relative_to(Path(site_packages).resolve()):
        raise SystemExit(f"whitebox_hf was imported from {location}, not from the installed wheel in {site_packages}")
    heavy = [m for m in ("torch", "diffusers", "peft", "accelerate", "datasets") if m in sys.modules]
    if heavy:
        raise SystemExit(f"import whitebox_hf imported {heavy}")

    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageClassification, AutoTokenizer

    from whitebox_hf import WhiteboxFlowPipeline
    from whitebox_hf.hub import bundled_checkpoint, export_remote_code, list_bundled_checkpoints
    from whitebox_hf.hub.model_card import TEMPLATE_PATH

    names = list_bundled_checkpoints()
    # 1. a bundled image classifier through the Auto classes, registered by `import whitebox_hf`
    classifier = AutoModelForImageClassification.from_pretrained(bundled_checkpoint("fashion-mnist-crate")).eval()
    size = classifier.config.image_size
    with torch.no_grad():
        logits = classifier(pixel_values=torch.zeros(1, classifier.config.num_channels, size, size)).logits
    assert logits.shape == (1, classifier.config.num_labels) and torch.isfinite(logits).all()
    # 2. the bundled language model generates
    lm_folder = bundled_checkpoint("python-docs-crate-alpha")
    tokenizer, lm = AutoTokenizer.from_pretrained(lm_folder), AutoModelForCausalLM.from_pretrained(lm_folder).eval()
    generated = lm.generate(**tokenizer("def ", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > 1
    # 3. one step of the bundled flow pipeline (diffusers resolves the components of the installed package)
    pipe = WhiteboxFlowPipeline.from_pretrained(bundled_checkpoint("fashion-mnist-flow-vae-dit"))
    pipe.set_progress_bar_config(disable=True)
    images = pipe([0], num_inference_steps=1, output_type="pt", generator=torch.Generator().manual_seed(0)).images
    assert images.shape[0] == 1 and torch.isfinite(images).all()
    # 4. package data: the card template, and the modeling sources the remote-code export vendors
    assert TEMPLATE_PATH.is_file() and TEMPLATE_PATH.resolve().is_relative_to(location.parent)
    with tempfile.TemporaryDirectory() as out:
        auto_map = export_remote_code(bundled_checkpoint("fashion-mnist-crate"), Path(out) / "crate")
        vendored = sorted(p.name for p in (Path(out) / "crate").glob("*.py"))
    # 5. the console script installed by the wheel: a usage error is one line, exit status 2
    script = Path(sysconfig.get_path("scripts")) / "whitebox-hf"
    usage = subprocess.run([str(script), "--no-such-flag"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and len(usage.stderr.splitlines()) == 1, usage.stderr
    print(json.dumps({"whitebox_hf": str(location.parent), "bundled": names, "logits": list(logits.shape),
                      "generated_tokens": int(generated.shape[1]), "pipeline_images": list(images.shape),
                      "remote_code": {"auto_map": sorted(auto_map), "files": vendored},
                      "console_script": usage.stderr.strip()}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
