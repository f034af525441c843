"""The Gradio Spaces of ``spaces/``, end to end in headless Chromium: load the page, upload or type, click, read the
result off the page, save a screenshot (to ``$WHITEBOX_SCREENSHOT_DIR``, else the test's tmp folder).

Tiny random models by default; ``WHITEBOX_SPACES_REAL_MODELS=1`` serves each Space's own local model instead."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read when gradio is imported
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, [os.environ.get(_name), "127.0.0.1", "localhost"]))

ROOT = Path(__file__).resolve().parents[2]
SPACES = ROOT / "spaces"
CHROMIUM = os.environ.get("WHITEBOX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
pytestmark = [
    # Generous: a Space's first request builds its model, and on a loaded 2-core machine that can take a minute.
    pytest.mark.timeout(300),
    # gradio 6.31's queue still uses pandas options that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]


def load_app(space: str):
    """Import ``spaces/<space>/app.py`` as a module (the Spaces are not part of the package)."""
    path = SPACES / space / "app.py"
    name = "space_" + space.replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(demo, timeout: float = 30.0):
    """Launch ``demo`` on a free loopback port without blocking; yield its URL; close it afterwards."""
    port = free_port()  # the app set its own queue (build_demo): demo.queue() here would replace it
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                show_error=True, share=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        demo.close()


def upload_file(page, elem_id: str, path, shown: str, attempts: int = 3, wait_ms: int = 30_000,
                total_ms: int = 180_000) -> None:
    """Set ``path`` on the hidden file input of the component ``#elem_id`` and wait until ``shown`` (a CSS selector
    inside the component, or ``text=...``) is visible.

    Why a retry: gradio's upload action replaces its hidden ``<input type=file>`` whenever the component re-renders
    (its ``update`` removes the input and builds a new one, and the old input's change listener then reads the new,
    empty one), so files set at that moment are dropped without an error; CI hit this once. So this polls: while
    the upload is on its way the input is gone and it waits; when an input is back without ``shown`` (the file
    was dropped by a re-render) or ``wait_ms`` passed with no result, it sets the file again, up to ``attempts``
    times in ``total_ms``. An upload that never shows still fails, with the component's text."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    component = page.locator(f"#{elem_id}")
    file_input = component.locator("input[type=file]")
    target = component.locator(shown).first
    file_input.first.wait_for(state="attached")  # the page has rendered the drop zone
    deadline = time.monotonic() + total_ms / 1000
    uploads, last_upload, input_vanished = 0, 0.0, False
    while time.monotonic() < deadline:
        try:  # a short wait_for, not is_visible(): is_visible() stayed False for a file name gradio splits into
            # two spans ("name", ".csv") where wait_for finds it
            target.wait_for(timeout=500)
            return
        except PlaywrightTimeoutError:
            pass
        has_input = file_input.count() > 0
        input_vanished = input_vanished or not has_input
        stale = time.monotonic() - last_upload > wait_ms / 1000
        if has_input and uploads < attempts and (uploads == 0 or input_vanished or stale):
            file_input.set_input_files(str(path))
            uploads, last_upload, input_vanished = uploads + 1, time.monotonic(), False
    raise AssertionError(f"#{elem_id}: {shown!r} did not show within {total_ms / 1000:.0f} s after {uploads} "
                         f"uploads of {path}; the component reads {component.inner_text()!r}")


def settle(page) -> None:
    """Wait until Gradio shows no pending or generating output (it dims outputs while an event runs)."""
    page.wait_for_function("() => !document.querySelector('.pending, .generating, .eta-bar')")
    page.wait_for_timeout(400)  # the fade-in of the last output


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium through Playwright; skips when either is missing."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: a system package, outside the pip install "
                    "(tools/install_system_packages.sh installs it; Debian: apt-get install -y chromium)")
    from playwright import sync_api  # in the test extra: missing is a failure, not a skip

    with sync_api.sync_playwright() as playwright:
        # Playwright gives every launch a new empty profile (its own --user-data-dir); it refuses that flag in args.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        yield page
    finally:
        context.close()


def use_default_models() -> bool:
    """``WHITEBOX_SPACES_REAL_MODELS=1``: serve the Spaces' own (trained, local) models instead of tiny random ones."""
    return os.environ.get("WHITEBOX_SPACES_REAL_MODELS", "") not in ("", "0")


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    """Where screenshots go: ``$WHITEBOX_SCREENSHOT_DIR``, else the test's tmp folder."""
    folder = Path(os.environ.get("WHITEBOX_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


BOOT = SPACES / "crate-image-classification" / "examples" / "ankle_boot.png"  # a Fashion-MNIST test image
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def tiny_crate_classifier(folder):
    from whitebox_hf import CrateConfig, CrateForImageClassification, CrateImageProcessor

    config = CrateConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, image_size=28, patch_size=4,
                         num_channels=1, num_labels=10, id2label=dict(enumerate(FASHION_CLASSES)))
    CrateForImageClassification(config).save_pretrained(folder)
    CrateImageProcessor(num_channels=1, size={"height": 28, "width": 28}, image_mean=[0.286], image_std=[0.353]
                        ).save_pretrained(folder)
    return folder


def test_crate_image_classification_space(page, tmp_path, screenshot_dir):
    app = load_app("crate-image-classification")
    demo = app.build_demo() if use_default_models() else app.build_demo(tiny_crate_classifier(tmp_path / "model"))
    with serve(demo) as url:
        page.goto(url)
        upload_file(page, "image-input", BOOT, "img")
        page.locator("#classify").click()
        table = page.locator("#diagnostics-table")
        table.get_by_text("coding rate").wait_for()
        prediction = page.locator("#prediction").inner_text()
        lines = [line.strip() for line in prediction.splitlines() if line.strip() and line.strip() != "Prediction"]
        assert lines and lines[0] in FASHION_CLASSES, prediction  # the headline: the top class
        assert len(re.findall(r"\d+%", prediction)) == 5, prediction  # the top-5 probabilities are shown
        if use_default_models():  # the trained classifier gets this test image right
            assert lines[0] == "Ankle boot", prediction
        rows = table.locator("tbody tr")
        assert rows.count() == (6 if use_default_models() else 3)  # one row per layer
        for element in ("#saliency img", "#sparsity-plot img"):
            image = page.locator(element).first
            image.wait_for()
            assert page.wait_for_function("el => el.complete && el.naturalWidth > 100", arg=image.element_handle())
        settle(page)
        page.screenshot(path=str(screenshot_dir / "crate-image-classification.png"), full_page=True)


def tiny_causal_lm(folder):
    from whitebox_hf import ToSTConfig, ToSTForCausalLM
    from whitebox_hf.tokenization import train_bpe_tokenizer

    text = ("The os module provides a portable way of using operating system dependent functionality. "
            "Use open() to read or write a file, and os.path to manipulate paths. ") * 20
    tokenizer = train_bpe_tokenizer([text], vocab_size=300)
    config = ToSTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        max_position_embeddings=64, layer_scale_init=1.0, eos_token_id=None,
                        pad_token_id=tokenizer.pad_token_id)
    ToSTForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_text_generation_space(page, tmp_path, screenshot_dir):
    app = load_app("text-generation")
    real = use_default_models()
    demo = app.build_demo() if real else app.build_demo(tiny_causal_lm(tmp_path / "model"))
    prompt = app.DEFAULT_PROMPT if real else "The os module"
    temperature = "0.8" if real else "0"  # the trained model samples; the tiny one decodes greedily
    with serve(demo) as url:
        page.goto(url)
        page.locator("#prompt textarea").fill(prompt)
        page.locator("#max-new-tokens input[type=range]").fill("48")
        page.locator("#temperature input[type=range]").fill(temperature)
        assert page.locator("#max-new-tokens input[type=number]").input_value() == "48"
        assert float(page.locator("#temperature input[type=number]").input_value()) == float(temperature)
        page.get_by_role("button", name="Generate", exact=True).click()
        output = page.locator("#output textarea")
        page.wait_for_function("el => el.value.length > 0", arg=output.element_handle())
        text = output.input_value()
        assert text.startswith(prompt) and len(text) > len(prompt), text
        settle(page)
        page.screenshot(path=str(screenshot_dir / "text-generation.png"), full_page=True)


def tiny_flow_pipeline(folder):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from whitebox_hf.models.denoisers import CrateDenoiserTransformer
    from whitebox_hf.pipelines import WhiteboxFlowPipeline

    transformer = CrateDenoiserTransformer(sample_size=16, in_channels=1, num_classes=3, hidden_size=32, num_layers=2,
                                           num_attention_heads=4, patch_size=4)
    with torch.no_grad():  # a fresh denoiser outputs exactly 0; random weights make the samples depend on it
        for parameter in transformer.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    WhiteboxFlowPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), num_classes=3,
                         id2label={0: "shirt", 1: "sneaker", 2: "bag"}).save_pretrained(folder)
    return folder


def test_image_generation_space(page, tmp_path, screenshot_dir):
    app = load_app("image-generation")
    real = use_default_models()
    demo = app.build_demo() if real else app.build_demo(tiny_flow_pipeline(tmp_path / "pipeline"))
    with serve(demo) as url:
        page.goto(url)
        page.locator("#class input").click()
        options = page.get_by_role("option")
        options.first.wait_for()
        choice = options.nth(min(2, options.count() - 1))
        name = choice.inner_text().strip()
        choice.click()
        assert page.locator("#class input").input_value() == name
        page.locator("#guidance input[type=range]").fill("4.5")
        page.locator("#steps input[type=range]").fill("30" if real else "8")
        page.locator("#num-images input[type=range]").fill("3")
        assert page.locator("#guidance input[type=number]").input_value() == "4.5"
        page.get_by_role("button", name="Generate", exact=True).click()
        images = page.locator("#gallery img")
        page.wait_for_function("n => document.querySelectorAll('#gallery img').length >= n", arg=3)
        for index in range(3):
            page.wait_for_function("el => el.complete && el.naturalWidth >= 64", arg=images.nth(index).element_handle())
        assert name in page.locator("#gallery").inner_text()  # each sample is captioned with its class
        settle(page)
        page.screenshot(path=str(screenshot_dir / "image-generation.png"), full_page=True)


def tiny_shape_pipelines(folder):
    """A text- and an image-conditioned `ShapeGenerationPipeline` with tiny random denoisers and condition encoders
    over the bundled pipeline's SITA-VAE (a trained decoder, so that sampled latents have a surface); returns the two
    folders."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from whitebox_hf import AlignedShapeLatentDenoiser, CrateConfig, CrateModel, ShapeGenerationPipeline, SitaVaeModel
    from whitebox_hf.hub import bundled_checkpoint
    from whitebox_hf.models.whitebox_clip import minilm_path
    from whitebox_hf.pipelines import default_shape_scheduler

    vae = SitaVaeModel.from_pretrained(bundled_checkpoint("procedural-shapes-image-to-3d") / "vae",
                                       dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(0)
    encoders = {
        "text": BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=24, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=48, max_position_embeddings=16)),
        "image": CrateModel(CrateConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=16,
                                        patch_size=4, num_channels=3)),
    }
    folders = []
    for kind, encoder in encoders.items():
        denoiser = AlignedShapeLatentDenoiser(num_latents=vae.config.num_latents,
                                              latent_channels=vae.config.latent_channels,
                                              condition_dim=encoder.config.hidden_size, hidden_size=16, num_layers=1,
                                              num_attention_heads=2)
        with torch.no_grad():  # a fresh denoiser's output layer is zero; random weights make the shapes depend on it
            for parameter in denoiser.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
        condition = (dict(text_encoder=encoder.eval(), tokenizer=tokenizer, max_text_length=8) if kind == "text" else
                     dict(image_encoder=encoder.eval(), image_mean=[0.85] * 3, image_std=[0.25] * 3))
        pipe = ShapeGenerationPipeline(denoiser=denoiser.eval(), scheduler=default_shape_scheduler(), vae=vae,
                                       latent_scaling_factor=0.66, **condition)
        pipe.save_pretrained(folder / kind)
        folders.append(folder / kind)
    return folders


def test_text_to_3d_space(page, tmp_path, screenshot_dir):
    app = load_app("text-to-3d")
    real = use_default_models()
    demo = app.build_demo() if real else app.build_demo(tiny_shape_pipelines(tmp_path / "pipelines"))
    text_mode = not real or any((path / "model_index.json").is_file() for path in app.TEXT_CANDIDATES)
    with serve(demo) as url:
        page.goto(url)
        page.locator("#steps input[type=range]").fill("10" if real else "3")
        page.locator("#resolution input[type=range]").fill("5")
        page.locator("#guidance input[type=range]").fill("3")
        assert page.locator("#resolution input[type=number]").input_value() == "5"
        summary = page.locator("#summary")
        if text_mode:
            page.locator("#prompt textarea").fill(app.EXAMPLE_PROMPTS[0])
            page.locator("#generate").click()
            summary.get_by_text("text-conditioned").wait_for()
            assert "33³ grid" in summary.inner_text() and "faces" in summary.inner_text()
            assert page.locator("#download a").first.get_attribute("href").endswith(".glb")
            page.locator("#prompt textarea").fill("")
        assert page.locator("#prompt").is_visible() == text_mode  # the text mode only with a text pipeline
        page.get_by_text("Held-out renders").first.wait_for()
        page.locator("button.gallery-item:has(img)").first.click()  # a held-out render (the captions have no img)
        page.locator("#image-input img").first.wait_for()
        page.locator("#generate").click()
        summary.get_by_text("image-conditioned").wait_for()
        text = summary.inner_text()
        assert "33³ grid" in text and "vertices" in text, text
        assert ("used as is" if real else "resized from 64×64 to 16×16") in text, text
        assert page.locator("#download a").first.get_attribute("href").endswith(".glb")
        page.locator("#shape canvas").first.wait_for()  # the 3D viewer shows the returned GLB
        settle(page)
        page.screenshot(path=str(screenshot_dir / "text-to-3d.png"), full_page=True)


def tiny_cupid_pipeline(folder, appearance: bool = False):
    """A `CupidPipeline` with a tiny random flow (16³ cube) reading the 64² renders of the Space's examples, with a
    tiny random stage-2 `CupidAppearanceModel` if ``appearance``; saved in ``folder``."""
    from whitebox_hf import (
        CupidAppearanceConfig,
        CupidAppearanceModel,
        CupidFlowConfig,
        CupidFlowModel,
        CupidPipeline,
    )

    encoder = dict(image_size=64, patch_size=16, num_channels=3, hidden_size=16, num_hidden_layers=1,
                   num_attention_heads=2)
    torch.manual_seed(0)
    model = CupidFlowModel(CupidFlowConfig(cube_resolution=16, patch_size=4, hidden_size=16, num_hidden_layers=1,
                                           num_attention_heads=2, image_encoder_config=dict(encoder)))
    stage2 = None
    if appearance:
        stage2 = CupidAppearanceModel(CupidAppearanceConfig(cube_resolution=16, patch_size=4, hidden_size=16,
                                                            num_hidden_layers=1, num_attention_heads=2,
                                                            image_encoder_config=dict(encoder)))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fresh flow's output layer is zero; random weights make the cube depend on it
        for part in filter(None, (model, stage2)):
            for parameter in part.parameters():
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    CupidPipeline(model.eval(), model.make_scheduler(),
                  appearance_model=None if stage2 is None else stage2.eval()).save_pretrained(folder)
    return folder


TINY_MOTION_PRIOR = {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_encoder_layers": 1,
                     "num_decoder_layers": 1, "noise_embedding_dim": 8}


def tiny_motion_pipeline(folder):
    """A `MotionGenerationPipeline` with a tiny random prior on the hand-made skeleton of the guidance tests (the real
    pipeline's minimum of 32 frames, windows of 32), saved in ``folder``."""
    from whitebox_hf.models.motion_prior import MotionPriorConfig, MotionPriorModel, motion_prior_scheduler
    from whitebox_hf.pipelines import MotionGenerationPipeline

    path = ROOT / "tests" / "models" / "test_motion_guidance.py"
    spec = importlib.util.spec_from_file_location("_motion_guidance_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    torch.manual_seed(0)
    prior = MotionPriorModel(MotionPriorConfig(**TINY_MOTION_PRIOR)).eval()
    MotionGenerationPipeline(prior, motion_prior_scheduler(prior.config, "ddim"),
                             offsets=helpers.skeleton_offsets().tolist(), window=32, overlap=8,
                             min_frames=32).save_pretrained(folder)
    return folder


def test_motion_from_head_space(page, tmp_path, screenshot_dir):
    app = load_app("motion-from-head")
    real = use_default_models()
    demo = app.build_demo() if real else app.build_demo(tiny_motion_pipeline(tmp_path / "pipeline"))
    with serve(demo) as url:
        page.goto(url)
        page.locator("#steps input[type=range]").fill("10" if real else "2")
        page.locator("#duration input").fill("1.5")
        page.get_by_label("off").check()
        status = page.locator("#status")
        # An uploaded head trajectory (the example CSV): no ground truth, one panel.
        page.get_by_text("Head trajectories (CSV)").first.wait_for()  # the example is offered
        upload_file(page, "upload", SPACES / "motion-from-head" / "examples" / "01_01_head_first_5s.csv",
                    "text=01_01_head_first_5s.csv")
        page.locator("#estimate").click()
        status.get_by_text("CSV trajectory 01_01_head_first_5s.csv").wait_for()
        assert "45 frames" in status.inner_text() and "MPJPE" not in status.inner_text(), status.inner_text()
        assert page.locator("#download a").first.get_attribute("href").endswith(".bvh")
        image = page.locator("#animation img").first
        image.wait_for()
        assert page.wait_for_function("el => el.complete && el.naturalWidth >= 200", arg=image.element_handle())
        try:
            app.held_out_clip("Boxing_Toes", {})
        except app.gr.Error:  # the BVH cache is missing: the uploaded trajectory was the whole test
            settle(page)
            page.screenshot(path=str(screenshot_dir / "motion-from-head.png"), full_page=True)
            return
        # A held-out clip, drawn beside its ground truth: clear the upload, pick the clip.
        page.locator("#upload button[aria-label='Clear']").first.click()
        page.locator("#clip input").click()
        page.get_by_role("option", name="Boxing_Toes").click()
        page.locator("#estimate").click()
        status.get_by_text("held-out clip Boxing_Toes").wait_for()
        assert "MPJPE against the ground truth" in status.inner_text(), status.inner_text()
        settle(page)
        page.screenshot(path=str(screenshot_dir / "motion-from-head.png"), full_page=True)


def test_image_to_3d_space(page, tmp_path, screenshot_dir):
    app = load_app("image-to-3d")
    real = use_default_models()
    if real:
        try:
            app.resolve_model_path()
        except FileNotFoundError as error:  # a trained run, not a module: nothing bundled fits the size cap yet
            pytest.skip(str(error))
    demo = app.build_demo() if real else app.build_demo(tiny_cupid_pipeline(tmp_path / "pipeline"))
    with serve(demo) as url:
        page.goto(url)
        page.locator("#steps input[type=range]").fill("10" if real else "3")
        page.locator("#guidance input[type=range]").fill("3")
        assert page.locator("#steps input[type=number]").input_value() == ("10" if real else "3")
        status, camera = page.locator("#status"), page.locator("#camera textarea")
        # A held-out render: its true camera is known, so the pose error is shown.
        page.get_by_text("Held-out renders").first.wait_for()
        page.locator("button.gallery-item:has(img)").first.click()  # examples sorted: airplane first
        page.locator("#image-input img").first.wait_for()
        page.locator("#reconstruct").click()
        status.get_by_text("the held-out airplane render").wait_for()
        assert "Euler steps" in status.inner_text() and "faces" in status.inner_text(), status.inner_text()
        text = camera.input_value()
        assert "Euler angles (xyz" in text and "against the true camera of the held-out airplane render" in text
        overlay = page.locator("#overlay img").first
        overlay.wait_for()
        assert page.wait_for_function("el => el.complete && el.naturalWidth == 64", arg=overlay.element_handle())
        assert page.locator("#download a").first.get_attribute("href").endswith(".glb")
        page.locator("#mesh canvas").first.wait_for()  # the 3D viewer shows the returned GLB
        # An RGBA upload: the alpha channel is the mask, and the page says so.
        upload = tmp_path / "upload.png"
        picture = __import__("PIL.Image", fromlist=["Image"]).new("RGBA", (48, 48), (90, 90, 90, 0))
        picture.paste((90, 90, 90, 255), (12, 12, 36, 36))
        picture.save(upload)
        page.locator("#image-input button[aria-label='Remove Image']").first.click()
        page.locator("#image-input img").first.wait_for(state="detached")
        upload_file(page, "image-input", upload, "img")
        page.locator("#reconstruct").click()
        status.get_by_text("masked by its alpha channel (RGBA)").wait_for()
        assert "resized from 48×48 to 64×64" in status.inner_text(), status.inner_text()
        settle(page)
        page.screenshot(path=str(screenshot_dir / "image-to-3d.png"), full_page=True)


def tiny_text_to_image_bundle(folder, controlnet: bool = True):
    """A text-to-image bundle built by ``training/bundle_checkpoints.py`` (`build_text_to_image_bundle`, float16,
    text encoder left out) from the tiny random pipeline of ``tests/tiny_text_to_image.py`` at MiniLM's width, with
    MiniLM as its text encoder (what the bundler requires) and, if ``controlnet``, a tiny ControlNet made from its
    U-Net with perturbed zero convolutions (so that control changes the image). Returns the bundle's folder."""
    from transformers import BertModel

    from tests.tiny_text_to_image import tiny_text_to_image_pipeline
    from whitebox_hf.models.whitebox_clip import minilm_path
    from whitebox_hf.pipelines.control import controlnet_from_base

    folder = Path(folder)
    pipe = tiny_text_to_image_pipeline(0, text_width=384)
    pipe.register_modules(text_encoder=BertModel.from_pretrained(str(minilm_path())).eval())
    pipe.save_pretrained(folder / "pipeline")
    if controlnet:
        net = controlnet_from_base(pipe)
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        net.save_pretrained(folder / "controlnet")
    bundler = load_bundler()
    bundler.build_text_to_image_bundle(folder / "pipeline", folder / "controlnet" if controlnet else None,
                                       folder / "bundle", "float16", "tiny-text-to-image")
    return folder / "bundle"


def load_bundler():
    """``training/bundle_checkpoints.py`` as a module (training scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location("bundle_checkpoints", ROOT / "training" / "bundle_checkpoints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_text_to_image_space(page, tmp_path, screenshot_dir):
    app = load_app("text-to-image")
    real = use_default_models()
    if real:
        try:
            app.resolve_model_path()
        except FileNotFoundError as error:  # the trained run is not bundled yet
            pytest.skip(str(error))
    demo = app.build_demo() if real else app.build_demo(tiny_text_to_image_bundle(tmp_path / "t2i"))
    with serve(demo) as url:
        page.goto(url)
        page.locator("#prompt textarea").fill(app.EXAMPLE_PROMPTS[4])
        page.locator("#steps input[type=range]").fill("10" if real else "3")
        page.locator("#guidance input[type=range]").fill("3")
        assert page.locator("#steps input[type=number]").input_value() == ("10" if real else "3")
        summary = page.locator("#summary")
        page.locator("#generate").click()
        summary.get_by_text("text-to-image").wait_for()
        assert "“Yellow star”; " in summary.inner_text() and "32×32 pixels" in summary.inner_text()
        output = page.locator("#output img").first
        output.wait_for()
        assert page.wait_for_function("el => el.complete && el.naturalWidth == 256", arg=output.element_handle())
        # A control picture (an example drawing): its Canny edges are computed, shown, and steer the result.
        page.get_by_text("Control pictures").first.wait_for()
        page.locator("button.gallery-item:has(img)").first.click()  # examples sorted: circle first
        page.locator("#control-input img").first.wait_for()
        page.locator("#generate").click()
        summary.get_by_text("ControlNet").wait_for()
        assert "the Canny edges of the upload (resized from 64×64 to 32×32" in summary.inner_text()
        edges = page.locator("#edges img").first
        edges.wait_for()
        assert page.wait_for_function("el => el.complete && el.naturalWidth == 256", arg=edges.element_handle())
        # A too-long prompt is truncated, and the page says so.
        page.locator("#prompt textarea").fill(" ".join(["a very long caption about a yellow star"] * 8))
        page.locator("#generate").click()
        summary.get_by_text("so it was truncated to").wait_for()
        settle(page)
        page.screenshot(path=str(screenshot_dir / "text-to-image.png"), full_page=True)
        # An empty prompt gets a message, not a result.
        page.locator("#prompt textarea").fill("")
        page.locator("#generate").click()
        page.get_by_text("Type a prompt first").first.wait_for()
