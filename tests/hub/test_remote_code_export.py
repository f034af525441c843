"""Remote-code export: the exported folders (CRATE classifier, causal CRATE, ToST and AoT language models) load with
``trust_remote_code=True`` in a process that cannot import whitebox_hf (a meta-path finder raising ImportError, src/
removed from sys.path), from a local folder and from the test Hub by repo id, and give the original outputs (logits,
backbone states, greedy generations) bit for bit; the tensors travel through safetensors files."""

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from whitebox_hf import (
    AoTConfig,
    AoTForCausalLM,
    CausalCrateConfig,
    CausalCrateForCausalLM,
    CrateForImageClassification,
    ToSTConfig,
    ToSTForCausalLM,
)
from whitebox_hf.hub import RemoteCodeExportError, export_remote_code, push_folder

LM_SHAPE = dict(vocab_size=61, max_position_embeddings=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)

# Run first in the child: any import of whitebox_hf (direct, or through an editable-install finder) fails.
BLOCK_WHITEBOX_HF = '''
import importlib.abc
import sys

class _BlockWhiteboxHF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "whitebox_hf" or name.startswith("whitebox_hf."):
            raise ImportError("whitebox_hf is blocked in this process")
        return None

sys.meta_path.insert(0, _BlockWhiteboxHF())
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("src")]
'''

CHILD = '''
import json
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageClassification

try:
    import whitebox_hf  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("whitebox_hf should not be importable here")

plan = json.loads(sys.argv[1])
outputs = {}
for name, (folder, kind) in plan["models"].items():
    inputs = load_file(plan["inputs"])
    if kind == "image":
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        backbone = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            outputs[name + ".logits"] = model(pixel_values=inputs["pixel_values"]).logits
            outputs[name + ".hidden"] = backbone(pixel_values=inputs["pixel_values"]).last_hidden_state
    else:
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            outputs[name + ".logits"] = model(input_ids=inputs["input_ids"]).logits
        outputs[name + ".generated"] = model.generate(inputs["input_ids"][:1, :5], max_new_tokens=8, do_sample=False)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    assert AutoConfig.from_pretrained(folder, trust_remote_code=True).model_type == model.config.model_type
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({k: v.contiguous() for k, v in outputs.items()}, plan["outputs"])
print("ok", sorted(outputs))
'''


def run_without_whitebox_hf(script: str, *args, tmp_path, endpoint=None) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter that cannot import whitebox_hf; online against ``endpoint`` if given
    (a clean environment is the simplest way to be online: huggingface_hub reads it at import)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_ENDPOINT")}
    # Same thread count as this process: CPU kernels split sums by thread, and the outputs must match bit for bit.
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS=str(torch.get_num_threads()))
    if endpoint:
        env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT=endpoint, HF_TOKEN="hf_test_token")
    code = BLOCK_WHITEBOX_HF + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)


def randomized(model):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def test_exported_models_load_without_the_package_with_identical_outputs(tmp_path, tiny_crate_config, hub_server):
    torch.manual_seed(0)
    models = {
        "crate": (randomized(CrateForImageClassification(tiny_crate_config())), "image"),
        "causal_crate": (randomized(CausalCrateForCausalLM(CausalCrateConfig(**LM_SHAPE))), "lm"),
        "tost": (randomized(ToSTForCausalLM(ToSTConfig(**LM_SHAPE, layer_scale_init=1.0))), "lm"),
        "aot": (randomized(AoTForCausalLM(AoTConfig(**LM_SHAPE))), "lm"),
    }
    inputs = {"pixel_values": torch.randn(2, 1, 8, 8), "input_ids": torch.randint(0, 61, (2, 12))}
    save_file(inputs, tmp_path / "inputs.safetensors")
    expected, plan = {}, {"inputs": str(tmp_path / "inputs.safetensors"), "outputs": str(tmp_path / "out.safetensors"),
                          "models": {}}
    for name, (model, kind) in models.items():
        model.save_pretrained(tmp_path / name)
        auto_map = export_remote_code(tmp_path / name, tmp_path / f"{name}_remote")
        plan["models"][name] = (str(tmp_path / f"{name}_remote"), kind)
        with torch.no_grad():
            if kind == "image":
                expected[name + ".logits"] = model(pixel_values=inputs["pixel_values"]).logits
                expected[name + ".hidden"] = model.crate(pixel_values=inputs["pixel_values"]).last_hidden_state
                assert auto_map["AutoModelForImageClassification"] == "modeling_crate.CrateForImageClassification"
            else:
                expected[name + ".logits"] = model(input_ids=inputs["input_ids"]).logits
                assert "AutoModelForCausalLM" in auto_map
        if kind == "lm":
            expected[name + ".generated"] = model.generate(inputs["input_ids"][:1, :5], max_new_tokens=8,
                                                           do_sample=False)
        config = json.loads((tmp_path / f"{name}_remote" / "config.json").read_text())
        assert config["auto_map"] == auto_map and "AutoConfig" in auto_map and "AutoModel" in auto_map
        for path in (tmp_path / f"{name}_remote").glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):  # only flat relative or third-party imports
                if isinstance(node, ast.ImportFrom):
                    assert node.level <= 1 and not (node.module or "").startswith("whitebox_hf"), path

    # The CRATE export also goes through the Hub: pushed to the test server, loaded by repo id in the child.
    push_folder(tmp_path / "crate_remote", "test-user/crate-remote-code", endpoint=hub_server)
    plan["models"]["crate_hub"] = ("test-user/crate-remote-code", "image")
    expected.update({k.replace("crate.", "crate_hub.", 1): v for k, v in expected.items() if k.startswith("crate.")})

    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path, endpoint=hub_server)
    assert result.returncode == 0, result.stdout + result.stderr
    actual = load_file(tmp_path / "out.safetensors")
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_the_blocker_really_blocks(tmp_path):
    result = run_without_whitebox_hf("import whitebox_hf", tmp_path=tmp_path)
    assert result.returncode != 0 and "whitebox_hf is blocked" in result.stderr


def test_export_refuses_bad_folders(tmp_path, tiny_crate_config):
    with pytest.raises(FileNotFoundError, match="config.json"):
        export_remote_code(tmp_path, tmp_path / "out")
    CrateForImageClassification(tiny_crate_config()).save_pretrained(tmp_path / "model")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_remote_code(tmp_path / "model", tmp_path / "out")
    export_remote_code(tmp_path / "model", tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "x").exists()
    from transformers import ViTConfig, ViTForImageClassification

    ViTForImageClassification(ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=8, image_size=8, patch_size=4)).save_pretrained(tmp_path / "vit")
    with pytest.raises(RemoteCodeExportError, match="transformers architecture"):
        export_remote_code(tmp_path / "vit", tmp_path / "vit_out")
