"""The package's diffusers components and its pipeline loader refuse pickled (``.bin``) weights before reading
them: a pickle can run code. The folder under test holds a ``diffusion_pytorch_model.bin`` whose unpickling would
write a marker file; the marker must never appear, and the refusal must say why and how to convert."""

import json
import pickle
import shutil

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from whitebox_hf import CrateDenoiserTransformer, WhiteboxFlowPipeline
from whitebox_hf.models.autoencoders import CrateRepresentationAutoencoder
from whitebox_hf.models.denoisers import build_dit_transformer


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w").write(...)``: code run by loading a weight file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pickle code ran')",))


def plant_pickle(folder, marker):
    """Replace the folder's safetensors weights by a ``diffusion_pytorch_model.bin`` that runs code when loaded."""
    for path in folder.glob("*.safetensors"):
        path.unlink()
    with open(folder / "diffusion_pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": _WritesMarker(marker)}, handle)


def assert_refused(error_info, marker):
    message = str(error_info.value)
    assert "diffusion_pytorch_model.bin" in message and "refuse" in message and "code" in message
    assert "safetensors" in message and "save_file" in message  # how to convert
    assert not marker.exists(), "the pickle was unpickled"


def tiny_denoiser():
    return CrateDenoiserTransformer(sample_size=8, in_channels=1, num_classes=3, hidden_size=16, num_layers=1,
                                    num_attention_heads=2, patch_size=2)


def test_the_planted_pickle_does_run_code_when_unpickled(tmp_path):
    """The fixture is live: loading it with pickle writes the marker (so the tests below can fail)."""
    marker = tmp_path / "marker"
    plant_pickle(tmp_path, marker)
    with open(tmp_path / "diffusion_pytorch_model.bin", "rb") as handle:
        pickle.load(handle)
    assert marker.read_text() == "pickle code ran"


@pytest.mark.parametrize("use_safetensors", [None, True])
def test_denoiser_from_pretrained_refuses_a_bin_only_folder(tmp_path, use_safetensors):
    tiny_denoiser().save_pretrained(tmp_path / "model")
    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "model", marker)
    kwargs = {} if use_safetensors is None else {"use_safetensors": use_safetensors}
    with pytest.raises(OSError) as error_info:
        CrateDenoiserTransformer.from_pretrained(tmp_path / "model", **kwargs)
    assert_refused(error_info, marker)


def test_use_safetensors_false_is_refused(tmp_path):
    tiny_denoiser().save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="use_safetensors"):
        CrateDenoiserTransformer.from_pretrained(tmp_path / "model", use_safetensors=False)


def test_autoencoder_from_pretrained_refuses_a_bin_only_folder(tmp_path, tiny_crate_config):
    config = tiny_crate_config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2).to_dict()
    CrateRepresentationAutoencoder(encoder_config=config, decoder_hidden_size=16, decoder_num_layers=1,
                                   decoder_num_heads=2).save_pretrained(tmp_path / "rae")
    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "rae", marker)
    with pytest.raises(OSError) as error_info:
        CrateRepresentationAutoencoder.from_pretrained(tmp_path / "rae")
    assert_refused(error_info, marker)


@pytest.mark.parametrize("transformer", ["crate", "dit"])
def test_load_pipeline_refuses_a_bin_only_component(tmp_path, transformer):
    """Both the package's component and a diffusers one (DiT): diffusers alone would unpickle the DiT's .bin."""
    model = tiny_denoiser() if transformer == "crate" else build_dit_transformer(
        8, 1, 3, hidden_size=16, num_layers=1, num_attention_heads=2, patch_size=2)
    WhiteboxFlowPipeline(model, FlowMatchEulerDiscreteScheduler()).save_pretrained(tmp_path / "pipe")
    marker = tmp_path / "marker"
    plant_pickle(tmp_path / "pipe" / "transformer", marker)
    with pytest.raises(OSError) as error_info:
        WhiteboxFlowPipeline.from_pretrained(tmp_path / "pipe")
    assert_refused(error_info, marker)
    with pytest.raises(ValueError, match="use_safetensors"):
        WhiteboxFlowPipeline.from_pretrained(tmp_path / "pipe", use_safetensors=False)
    assert not marker.exists()


def test_a_reloaded_dit_pipeline_still_checks_its_inputs(tmp_path):
    """Input checks are a forward hook on diffusers' DiT: `load_pipeline` adds them back after loading."""
    model = build_dit_transformer(8, 1, 3, hidden_size=16, num_layers=1, num_attention_heads=2, patch_size=2)
    WhiteboxFlowPipeline(model, FlowMatchEulerDiscreteScheduler()).save_pretrained(tmp_path / "pipe")
    reloaded = WhiteboxFlowPipeline.from_pretrained(tmp_path / "pipe").transformer
    with pytest.raises(ValueError, match="hidden_states.*7×7"):
        reloaded(torch.zeros(1, 1, 7, 7), torch.tensor([1.0]), class_labels=torch.tensor([0]))
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "DiTTransformer2DModel"]  # saved as diffusers' class, unchanged
    shutil.rmtree(tmp_path / "pipe")
