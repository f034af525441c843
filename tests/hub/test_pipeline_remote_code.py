"""Saved pipelines load the way diffusers users load pipelines: ``DiffusionPipeline.from_pretrained(folder_or_repo,
trust_remote_code=True)`` in a process that cannot import whitebox_hf (the blocker of test_remote_code_export), from
a local folder and from the test Hub by repo id, and ``WhiteboxFlowPipeline/WhiteboxDDPMPipeline.from_pretrained``
with the package's classes; every way samples exactly what the saved pipeline samples under a fixed generator.
Covered: the flow pipeline with a DiT and a CRATE denoiser, in pixel space and in the latent space of an
AutoencoderKL and of the CRATE RAE, and the DDPM U-Net pipeline."""

import ast
import json
import sys
import types

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, FlowMatchEulerDiscreteScheduler, UNet2DModel
from hub_server import go_online
from safetensors.torch import load_file, save_file
from test_remote_code_export import run_without_whitebox_hf

from whitebox_hf import CrateConfig, WhiteboxDDPMPipeline, WhiteboxFlowPipeline
from whitebox_hf.hub import bundled_checkpoint, push_folder
from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder
from whitebox_hf.models.autoencoders.rae import sincos_position_embedding_2d
from whitebox_hf.models.denoisers import CrateDenoiserTransformer, build_dit_transformer
from whitebox_hf.utils.vendoring import RemoteCodeExportError, bundle_module

NUM_CLASSES = 3
ID2LABEL = {0: "shirt", 1: "shoe", 2: "bag"}
CALL = dict(class_labels=[0, 2, 1], num_inference_steps=3, guidance_scale=2.0, output_type="pt")


def perturb(model, seed=0):
    """Fresh denoisers output exactly 0: random weights make the samples depend on every tensor."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def tiny_vae():
    return perturb(AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                                 up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                 layers_per_block=1, latent_channels=2, norm_num_groups=4, sample_size=8,
                                 scaling_factor=0.5, shift_factor=0.1), seed=1)


def tiny_rae():
    encoder = CrateConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=2,
                          num_channels=1)
    rae = CrateRepresentationAutoencoder(encoder_config=encoder.to_dict(), decoder_hidden_size=16,
                                         decoder_num_layers=1, decoder_num_heads=2)
    rae.set_latent_statistics(torch.linspace(-0.1, 0.1, 16), torch.linspace(0.5, 1.5, 16))
    return perturb(rae, seed=2)


def crate(sample_size, in_channels):
    return perturb(CrateDenoiserTransformer(sample_size=sample_size, in_channels=in_channels, num_classes=NUM_CLASSES,
                                            hidden_size=32, num_layers=2, num_attention_heads=4, patch_size=2))


def dit(sample_size, in_channels):
    return perturb(build_dit_transformer(sample_size, in_channels, NUM_CLASSES, hidden_size=32, num_layers=2,
                                         num_attention_heads=4, patch_size=2))


def flow(transformer, autoencoder=None):
    return WhiteboxFlowPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
                                autoencoder=autoencoder, num_classes=NUM_CLASSES, id2label=ID2LABEL)


def ddpm():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, num_class_embeds=NUM_CLASSES + 1)
    return WhiteboxDDPMPipeline(unet=perturb(unet), scheduler=DDPMScheduler(num_train_timesteps=50), id2label=ID2LABEL)


def pipelines():
    return {
        "dit_pixel": flow(dit(8, 1)),
        "dit_vae": flow(dit(4, 2), tiny_vae()),
        "crate_pixel": flow(crate(8, 1)),
        "crate_rae": flow(crate(4, 16), tiny_rae()),
        "ddpm": ddpm(),
    }


# (model_index.json entries, code files) each pipeline folder must have.
LAYOUT = {
    "dit_pixel": ({"_class_name": ["pipeline_whitebox_flow", "WhiteboxFlowPipeline"],
                   "transformer": ["diffusers", "DiTTransformer2DModel"], "autoencoder": [None, None]},
                  {"pipeline_whitebox_flow.py"}),
    "dit_vae": ({"transformer": ["diffusers", "DiTTransformer2DModel"], "autoencoder": ["diffusers", "AutoencoderKL"]},
                {"pipeline_whitebox_flow.py"}),
    "crate_pixel": ({"transformer": ["crate_denoiser", "CrateDenoiserTransformer"]},
                    {"pipeline_whitebox_flow.py", "transformer/crate_denoiser.py"}),
    "crate_rae": ({"transformer": ["crate_denoiser", "CrateDenoiserTransformer"],
                   "autoencoder": ["rae", "CrateRepresentationAutoencoder"]},
                  {"pipeline_whitebox_flow.py", "transformer/crate_denoiser.py", "autoencoder/rae.py"}),
    "ddpm": ({"_class_name": ["pipeline_whitebox_ddpm", "WhiteboxDDPMPipeline"], "unet": ["diffusers", "UNet2DModel"]},
             {"pipeline_whitebox_ddpm.py"}),
}

CHILD = '''
import json
import sys

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import save_file

try:
    import whitebox_hf  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("whitebox_hf should not be importable here")

plan = json.loads(sys.argv[1])
outputs = {}

def sample(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(generator=torch.Generator().manual_seed(7), **plan["call"]).images

for name, source in plan["sources"].items():
    pipe = DiffusionPipeline.from_pretrained(source, trust_remote_code=True)
    modules = [type(pipe).__module__] + [type(c).__module__ for c in pipe.components.values() if c is not None]
    assert all(m.startswith(("diffusers.", "diffusers_modules.")) for m in modules), modules
    assert pipe.config.num_classes == plan["num_classes"].get(name, 3), pipe.config
    outputs[name] = sample(pipe)
    if name in plan["resave"]:
        # A pipeline loaded from a folder's code saves a folder that loads the same way (it copies that code).
        pipe.save_pretrained(plan["resave"][name])
        outputs[name + ".resaved"] = sample(DiffusionPipeline.from_pretrained(plan["resave"][name],
                                                                              trust_remote_code=True))
assert not [m for m in sys.modules if m.startswith("whitebox_hf")]
save_file({k: v.contiguous() for k, v in outputs.items()}, plan["outputs"])
print("ok", sorted(outputs))
'''


def sample(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(generator=torch.Generator().manual_seed(7), **CALL).images


def test_saved_pipelines_load_both_ways_locally_and_from_the_hub(tmp_path, hub_server, monkeypatch):
    expected, sources, resave = {}, {}, {}
    for name, pipe in pipelines().items():
        folder = tmp_path / name
        pipe.save_pretrained(folder)
        expected[name] = sample(pipe)

        entries, code_files = LAYOUT[name]
        index = json.loads((folder / "model_index.json").read_text())
        assert {key: index[key] for key in entries} == entries
        assert {str(p.relative_to(folder)) for p in folder.rglob("*.py")} == code_files
        for path in folder.rglob("*.py"):  # self-contained: no whitebox_hf import, no relative import
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    assert node.level == 0 and not node.module.startswith("whitebox_hf"), (path, node.module)
                elif isinstance(node, ast.Import):
                    assert not any(alias.name.startswith("whitebox_hf") for alias in node.names), path

        # With whitebox_hf: the package's classes, the folder's code never runs (no trust_remote_code needed).
        cls = type(pipe)
        reloaded = cls.from_pretrained(folder)
        assert type(reloaded) is cls
        assert all(type(c).__module__.startswith(("whitebox_hf.", "diffusers."))
                   for c in reloaded.components.values() if c is not None)
        assert torch.equal(sample(reloaded), expected[name]), name
        assert reloaded.labels["bag"] == 2 and reloaded.null_class_id == NUM_CLASSES

        push_folder(folder, f"test-user/{name}", endpoint=hub_server)
        sources[name] = str(folder)
        sources[name + ".hub"] = f"test-user/{name}"
        expected[name + ".hub"] = expected[name]
    resave["crate_rae.hub"] = str(tmp_path / "crate_rae_resaved")
    expected["crate_rae.hub.resaved"] = expected["crate_rae"]
    # The bundled VAE + DiT pipeline is saved in this layout too.
    sources["bundled"] = str(bundled_checkpoint("fashion-mnist-flow-vae-dit"))
    expected["bundled"] = sample(WhiteboxFlowPipeline.from_pretrained(sources["bundled"]))

    # Without whitebox_hf: diffusers' custom pipeline and components, from the folders and from the Hub.
    plan = {"sources": sources, "resave": resave, "call": CALL, "outputs": str(tmp_path / "out.safetensors"),
            "num_classes": {"bundled": 10}}
    result = run_without_whitebox_hf(CHILD, json.dumps(plan), tmp_path=tmp_path, endpoint=hub_server)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    actual = load_file(tmp_path / "out.safetensors")
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key

    # With whitebox_hf, by repo id, and diffusers' way in this process too.
    go_online(monkeypatch, hub_server)
    for name, cls in (("dit_pixel", WhiteboxFlowPipeline), ("dit_vae", WhiteboxFlowPipeline),
                      ("crate_pixel", WhiteboxFlowPipeline), ("crate_rae", WhiteboxFlowPipeline),
                      ("ddpm", WhiteboxDDPMPipeline)):
        from_hub = cls.from_pretrained(f"test-user/{name}")
        assert type(from_hub) is cls and torch.equal(sample(from_hub), expected[name]), name
    assert type(from_hub.unet) is UNet2DModel
    assert type(WhiteboxFlowPipeline.from_pretrained("test-user/crate_rae").autoencoder) is CrateRepresentationAutoencoder
    generic = DiffusionPipeline.from_pretrained("test-user/ddpm", trust_remote_code=True)
    assert type(generic).__module__.startswith("diffusers_modules.")
    assert torch.equal(sample(generic), expected["ddpm"])
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(str(tmp_path / "dit_pixel"))


def test_folders_saved_before_the_remote_code_layout_still_load(tmp_path):
    """Older folders name the pipeline by class and a component by whitebox_hf module path, with no code."""
    pipe = flow(crate(8, 1))
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    index["_class_name"] = "WhiteboxFlowPipeline"
    index["transformer"] = ["whitebox_hf.models.denoisers.crate_denoiser", "CrateDenoiserTransformer"]
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    for path in tmp_path.rglob("*.py"):
        path.unlink()
    assert torch.equal(sample(WhiteboxFlowPipeline.from_pretrained(tmp_path)), sample(pipe))


def test_loading_through_the_package_checks_its_arguments(tmp_path):
    pipe = ddpm()
    pipe.save_pretrained(tmp_path / "ddpm")
    with pytest.raises(ValueError, match="holds a WhiteboxDDPMPipeline, not a WhiteboxFlowPipeline"):
        WhiteboxFlowPipeline.from_pretrained(tmp_path / "ddpm")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['schedular'\\]"):
        WhiteboxDDPMPipeline.from_pretrained(tmp_path / "ddpm", schedular=None)
    with pytest.raises(OSError, match="no folder"):
        WhiteboxDDPMPipeline.from_pretrained(tmp_path / "missing")
    with pytest.raises(OSError, match="model_index.json"):
        WhiteboxDDPMPipeline.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="push_to_hub=True"):
        pipe.save_pretrained(tmp_path / "again", repo_id="test-user/x")
    # Components and configuration values can be replaced at load time, as with diffusers.
    scheduler = DDPMScheduler(num_train_timesteps=20)
    reloaded = WhiteboxDDPMPipeline.from_pretrained(tmp_path / "ddpm", scheduler=scheduler, id2label={0: "x"})
    assert reloaded.scheduler is scheduler and reloaded.labels == {"x": 0}
    half = WhiteboxDDPMPipeline.from_pretrained(tmp_path / "ddpm", torch_dtype=torch.float16)
    assert half.unet.dtype == torch.float16


def test_bundles_are_one_file_and_rename_clashing_helpers(tmp_path, monkeypatch):
    # Two modules of the package that each define a different top-level `table`: bundled into one file, the
    # dependency's copy must be renamed so each caller keeps its own.
    import importlib

    import whitebox_hf

    (tmp_path / "_bundle_clash_a.py").write_text('def table():\n    return "a"\n\n\ndef use_a():\n    return table()\n')
    (tmp_path / "_bundle_clash_b.py").write_text(
        'from ._bundle_clash_a import use_a\n\n\ndef table():\n    return "b"\n\n\n'
        "def both():\n    return table(), use_a()\n"
    )
    monkeypatch.setattr(whitebox_hf, "__path__", [*whitebox_hf.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    code = bundle_module("whitebox_hf._bundle_clash_b")
    assert code.count("def table(") == 1 and "def __bundle_clash_a_table(" in code
    module = types.ModuleType("bundled_clash")
    exec(compile(code, "clash.py", "exec"), module.__dict__)
    assert module.both() == ("b", "a")
    # A real component: the RAE bundle is one self-contained file that runs.
    code = bundle_module("whitebox_hf.models.autoencoders.rae")
    imported = {
        alias.name for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module or "" for node in ast.walk(ast.parse(code)) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "whitebox_hf" for name in imported), imported
    module = types.ModuleType("bundled_rae")  # dataclasses look their module up in sys.modules
    sys.modules["bundled_rae"] = module
    try:
        exec(compile(code, "rae.py", "exec"), module.__dict__)
        assert torch.equal(module.sincos_position_embedding_2d(8, 2, 3), sincos_position_embedding_2d(8, 2, 3))
    finally:
        del sys.modules["bundled_rae"]
    with pytest.raises(RemoteCodeExportError, match="not a whitebox_hf module"):
        bundle_module("diffusers.pipelines.dit.pipeline_dit")


def test_the_bundled_pipeline_carries_the_current_code():
    """The bundled folder's module is the bundle of today's source: regenerate it with
    ``python training/bundle_checkpoints.py --code-only`` after editing the pipeline modules."""
    folder = bundled_checkpoint("fashion-mnist-flow-vae-dit")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_whitebox_flow", "WhiteboxFlowPipeline"]
    assert (folder / "pipeline_whitebox_flow.py").read_text() == bundle_module(
        "whitebox_hf.pipelines.pipeline_whitebox_flow")
