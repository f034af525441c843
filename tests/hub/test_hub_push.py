"""Push to and load from a Hub endpoint (the in-repo test server of ``tests/hub_server.py``): a CRATE classifier, a
BPE tokenizer, diffusers pipelines, a model card and a whole folder; outputs identical after the round trip.

Offline/online: the test session runs with ``HF_HUB_OFFLINE=1`` (``tests/conftest.py``), which huggingface_hub
reads once at import. ``go_online`` patches the values it read (``huggingface_hub.constants.HF_HUB_OFFLINE`` /
``ENDPOINT`` / URL template, the default ``HfApi``'s endpoint, diffusers' copies) through ``monkeypatch``, so each
test below talks to the loopback server as if ``HF_ENDPOINT=<server> HF_HUB_OFFLINE=0`` had been exported, and
everything is restored afterwards.
"""

import pytest
import torch
from hub_server import go_online
from huggingface_hub import (
    HfApi,
    ModelCard,
    list_repo_files,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from transformers import AutoModelForImageClassification, AutoTokenizer

import whitebox_hf
from whitebox_hf.hub import (
    HubOfflineError,
    image_classification_model_card,
    push_folder,
)
from whitebox_hf.tokenization import train_bpe_tokenizer


@pytest.fixture
def online(hub_server, monkeypatch):
    go_online(monkeypatch, hub_server)
    return hub_server


def tiny_classifier(tiny_crate_config):
    model = whitebox_hf.CrateForImageClassification(tiny_crate_config()).eval()
    with torch.no_grad():  # random head so that the logits are not all equal
        model.classifier.weight.normal_()
    return model


def test_push_model_and_load_back_with_identical_outputs(online, tiny_crate_config):
    model = tiny_classifier(tiny_crate_config)
    commit = model.push_to_hub("test-user/crate-tiny", commit_message="tiny crate")
    assert "commit" in str(commit.commit_url)
    reloaded = AutoModelForImageClassification.from_pretrained("test-user/crate-tiny").eval()
    pixels = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=pixels).logits, reloaded(pixel_values=pixels).logits)
    files = set(list_repo_files("test-user/crate-tiny"))
    assert {"config.json", "model.safetensors"} <= files
    assert model_info("test-user/crate-tiny").sha == commit.oid


def test_push_tokenizer_and_load_back(online):
    tokenizer = train_bpe_tokenizer(
        ["the quick brown fox jumps over the lazy dog"] * 20 + ["white-box transformers compress tokens"] * 20,
        vocab_size=300, model_max_length=64)
    tokenizer.push_to_hub("test-user/bpe-tiny")
    reloaded = AutoTokenizer.from_pretrained("test-user/bpe-tiny")
    text = "the lazy transformers compress the quick fox"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(reloaded) == len(tokenizer) and reloaded.pad_token == tokenizer.pad_token


def test_push_diffusers_pipeline_and_load_back(online, tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    pipe = DDPMPipeline(unet=unet.eval(), scheduler=DDPMScheduler(num_train_timesteps=10))
    pipe.set_progress_bar_config(disable=True)
    pipe.push_to_hub("test-user/ddpm-tiny")
    reloaded = DDPMPipeline.from_pretrained("test-user/ddpm-tiny")
    # The weights come back bit for bit ...
    original_state, reloaded_state = pipe.unet.state_dict(), reloaded.unet.state_dict()
    assert original_state.keys() == reloaded_state.keys()
    assert all(torch.equal(original_state[k], reloaded_state[k]) for k in original_state)
    # ... and the Hub copy samples exactly like a local save/load of the same pipeline (a diffusers-loaded UNet
    # already differs from the in-memory one by ~1e-7 in float32 convolutions, with or without a Hub).
    pipe.save_pretrained(tmp_path / "local")
    local = DDPMPipeline.from_pretrained(tmp_path / "local")
    images = []
    for candidate in (pipe, local, reloaded):
        candidate.set_progress_bar_config(disable=True)
        images.append(candidate(batch_size=1, num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                                output_type="np").images)
    assert (images[1] == images[2]).all()
    assert abs(images[0] - images[2]).max() < 1e-5


def test_push_whitebox_flow_pipeline_and_load_back(online):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from whitebox_hf import pipelines
    from whitebox_hf.models import denoisers

    torch.manual_seed(0)
    transformer = denoisers.CrateDenoiserTransformer(sample_size=8, in_channels=1, num_classes=3, hidden_size=32,
                                                     num_layers=2, num_attention_heads=4, patch_size=2)
    with torch.no_grad():
        for parameter in transformer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    pipe = pipelines.WhiteboxFlowPipeline(transformer=transformer.eval(), scheduler=FlowMatchEulerDiscreteScheduler(),
                                          num_classes=3)
    pipe.set_progress_bar_config(disable=True)
    pipe.push_to_hub("test-user/flow-tiny")
    # diffusers resolves a third-party component only from a local folder (hf_conventions §0.5): download first.
    local = snapshot_download("test-user/flow-tiny")
    reloaded = pipelines.WhiteboxFlowPipeline.from_pretrained(local)
    reloaded.set_progress_bar_config(disable=True)
    kwargs = dict(class_labels=[0, 2], num_inference_steps=2, guidance_scale=2.0, output_type="pt")
    first = pipe(generator=torch.Generator().manual_seed(0), **kwargs).images
    second = reloaded(generator=torch.Generator().manual_seed(0), **kwargs).images
    assert torch.equal(first, second)


def test_push_card_and_load_back(online, tiny_crate_config):
    card = image_classification_model_card(tiny_crate_config(), {"accuracy": 0.5}, dataset_name="Fashion-MNIST",
                                           dataset_id="zalando-datasets/fashion_mnist")
    push_folder_repo = "test-user/card-only"
    HfApi().create_repo(push_folder_repo)  # a card is pushed into an existing repo
    card.push_to_hub(push_folder_repo, create_pr=False)
    loaded = ModelCard.load(push_folder_repo)
    assert loaded.data.eval_results[0].metric_value == 0.5
    assert loaded.content == card.content


def test_push_folder_uploads_everything_and_snapshot_download_matches(online, tmp_path, tiny_crate_config):
    folder = tmp_path / "model"
    model = tiny_classifier(tiny_crate_config)
    model.save_pretrained(folder)
    image_classification_model_card(model.config, {"accuracy": 0.25}, dataset_name="Fashion-MNIST").save(
        str(folder / "README.md"))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "junk.pyc").write_bytes(b"x")
    push_folder(folder, "test-user/folder", commit_message="first")
    push_folder(folder, "test-user/folder", commit_message="again (exist_ok)")
    local = snapshot_download("test-user/folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    infos = HfApi().get_paths_info("test-user/folder", ["config.json", "missing.txt"])
    assert [info.path for info in infos] == ["config.json"] and infos[0].size == (folder / "config.json").stat().st_size
    assert sorted(list_repo_files("test-user/folder")) == names
    for name in names:
        assert (folder / name).read_bytes() == (tmp_path.parent / local / name).read_bytes()


def test_push_folder_with_explicit_endpoint_while_offline(hub_server, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    url = push_folder(tmp_path, "test-user/explicit", endpoint=hub_server)
    assert url.startswith(hub_server)
    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE  # restored after the push


def test_push_offline_fails_at_once_with_a_clear_message(tmp_path):
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE.*HF_ENDPOINT"):
        push_folder(tmp_path, "test-user/anything")


def test_push_folder_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        push_folder(tmp_path / "missing", "a/b")
    with pytest.raises(ValueError, match="namespace/name"):
        push_folder(tmp_path, "no-namespace")


def test_server_answers_missing_repo_and_file_with_hub_errors(online):
    from huggingface_hub import hf_hub_download

    with pytest.raises(RepositoryNotFoundError):
        model_info("test-user/does-not-exist")
    HfApi().create_repo("test-user/empty")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("test-user/empty", "config.json")
