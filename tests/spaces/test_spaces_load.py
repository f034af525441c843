"""The Gradio Spaces under a bounded load, through their API with `gradio_client` (no browser): concurrent clients get
every answer, a burst beyond the queue gets Gradio's "Queue is full" answer and nothing else, and bad input gets a
clear `gr.Error` message while the Space keeps serving. A small version of ``benchmarks/load_test_spaces.py`` (whose
helpers it uses), with each Space served in this process on its bundled checkpoint."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from test_spaces_browser import (  # noqa: E402  (same folder; sets GRADIO_ANALYTICS_ENABLED)
    load_app,
    serve,
    tiny_cupid_pipeline,
    tiny_motion_pipeline,
    tiny_text_to_image_bundle,
)

ROOT = Path(__file__).resolve().parents[2]
SPACES = ["crate-image-classification", "text-generation", "image-generation", "text-to-3d", "motion-from-head",
          "image-to-3d", "text-to-image"]
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),  # gradio's queue and pandas 3
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
]


def load_benchmark():
    path = ROOT / "benchmarks" / "load_test_spaces.py"
    spec = importlib.util.spec_from_file_location("load_test_spaces", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


def build(name: str, folder: Path, **kwargs):
    """The Space's demo on its bundled checkpoint; the motion, image-to-3D and text-to-image Spaces on tiny random
    pipelines."""
    app = load_app(name)
    if name == "motion-from-head":
        return app.build_demo(tiny_motion_pipeline(folder / "motion-pipeline"), **kwargs)
    if name == "image-to-3d":
        return app.build_demo(tiny_cupid_pipeline(folder / "cupid-pipeline"), **kwargs)
    if name == "text-to-image":  # its bundle is built once the trained runs exist; a tiny one until then
        return app.build_demo(tiny_text_to_image_bundle(folder / "text-to-image"), **kwargs)
    return app.build_demo(**kwargs)


@pytest.fixture(scope="module", params=SPACES)
def space(request, tmp_path_factory):
    """(name, url) of a Space with its default queue (max_size 16), served for the whole module."""
    with serve(build(request.param, tmp_path_factory.mktemp("model"))) as url:
        yield request.param, url


def test_concurrent_clients_get_every_answer(space):
    name, url = space
    # Three clients at once (more than any Space serves at a time, 1 or 2, so requests queue), one request each: the
    # full load (benchmarks/load_test_spaces.py) is a benchmark, not a test.
    result = bench.drive(url, name, clients=3, requests=1, timeout=60)
    assert result.failures == []
    assert len(result.latencies_s) == 3 and all(latency > 0 for latency in result.latencies_s)
    assert result.percentile(50) <= result.percentile(95) <= max(result.latencies_s)


@pytest.mark.parametrize("name", SPACES)
def test_burst_beyond_the_queue_gets_the_busy_answer(name, monkeypatch, tmp_path):
    monkeypatch.setenv(bench.QUEUE_SIZE_ENV, "1")  # read by build_demo
    monkeypatch.setenv(bench.CONCURRENCY_ENV, "1")
    demo = build(name, tmp_path)
    assert demo._queue.max_size == 1
    with serve(demo) as url:
        result = bench.burst(url, name, size=8, timeout=60)
        assert result.other_errors == []
        assert result.busy >= 1 and result.succeeded >= 1 and result.succeeded + result.busy == 8
        assert all(bench.BUSY_MESSAGE in message for message in result.busy_messages), result.busy_messages
        # the Space is still up and serving once the burst is over
        assert bench.drive(url, name, clients=1, requests=1, timeout=60).failures == []


def test_queue_settings_from_the_environment_are_checked(monkeypatch):
    app = load_app("text-generation")
    monkeypatch.setenv(app.QUEUE_SIZE_ENV, "0")
    with pytest.raises(ValueError, match=r"\$WHITEBOX_SPACE_QUEUE_SIZE \(max_size\) must be a positive integer, got '0'"):
        app.build_demo()
    monkeypatch.setenv(app.QUEUE_SIZE_ENV, "many")
    with pytest.raises(ValueError, match="got 'many'"):
        app.build_demo()
    monkeypatch.delenv(app.QUEUE_SIZE_ENV)
    with pytest.raises(ValueError, match=r"`concurrency_limit` must be a positive integer, got 0"):
        app.build_demo(concurrency_limit=0)


BAD_INPUTS = {
    "crate-image-classification": [((None,), "Upload an image first.")],
    "text-generation": [
        (("", 8, 0.8, 0), "Type a prompt first."),
        (("The os module", 2.5, 0.8, 0), "Max new tokens must be a whole number, got 2.5."),
        (("The os module", 10_000, 0.8, 0), "greater than maximum"),
        (("The os module", 8, -1.0, 0), "less than minimum"),
        (("The os module", 8, 0.8, None), "Seed must be a whole number, got None."),
    ],
    "image-generation": [
        ((0, 3.0, 500, 0, 1), "greater than maximum"),
        ((0, 3.0, 2.5, 0, 1), "Steps must be a whole number, got 2.5."),
        ((0, 3.0, 4, 0, 0), "less than minimum"),
        ((99, 3.0, 4, 0, 1), "not in the list of choices"),
        ((0, 3.0, 4, -5, 1), "less than minimum"),
    ],
    "text-to-3d": [  # (prompt, image, guidance_scale, steps, seed, octree_depth); worded alike with or without text
        (("", None, 3.0, 2, 0, 4), "an image first."),
        (("a lamp", bench.request_args("text-to-3d", 0)[1], 3.0, 2, 0, 4), "Give a prompt or an image, not both"),
        (("", bench.request_args("text-to-3d", 0)[1], 3.0, 2.5, 0, 4), "Steps must be a whole number, got 2.5."),
        (("", bench.request_args("text-to-3d", 0)[1], -1.0, 2, 0, 4), "less than minimum"),
        (("", bench.request_args("text-to-3d", 0)[1], 3.0, 2, 0, 9), "greater than maximum"),
    ],
    "motion-from-head": [  # (clip, upload, steps, guidance, floor_height, seed, start_s, duration_s)
        (("01_01", bench.request_args("motion-from-head", 0)[1], 2, "off", 0.0, 0, 0.0, 0.5),
         "the trajectory is too short: 15 frames"),
        (("01_01", bench.request_args("motion-from-head", 0)[1], 2.5, "off", 0.0, 0, 0.0, 1.2),
         "Steps must be a whole number, got 2.5."),
        (("01_01", bench.request_args("motion-from-head", 0)[1], 2, "off", 0.0, 0, 9.0, 1.2),
         "Start 9 s lies beyond the end"),
        (("01_01", bench.request_args("motion-from-head", 0)[1], 2, "sometimes", 0.0, 0, 0.0, 1.2),
         "not in the list of choices"),
    ],
    "image-to-3d": [  # (image, steps, guidance_scale, seed, occupancy_threshold)
        ((None, 2, 3.0, 0, 0.5), "Upload an image or pick a held-out render first."),
        ((bench.request_args("image-to-3d", 0)[0], 2.5, 3.0, 0, 0.5), "Steps must be a whole number, got 2.5."),
        ((bench.request_args("image-to-3d", 0)[0], 2, -1.0, 0, 0.5), "less than minimum"),
        ((bench.request_args("image-to-3d", 0)[0], 2, 3.0, 0, 0.99), "greater than maximum"),
        ((bench.request_args("image-to-3d", 0)[0], 2, 3.0, None, 0.5), "Seed must be a whole number, got None."),
    ],
    "text-to-image": [  # (prompt, guidance_scale, steps, seed, control_image, control_mode)
        (("", 3.0, 2, 0, None, "Image: compute its Canny edges"), "Type a prompt first"),
        (("a star", 3.0, 2.5, 0, None, "Image: compute its Canny edges"), "Steps must be a whole number, got 2.5."),
        (("a star", 0.5, 2, 0, None, "Image: compute its Canny edges"), "less than minimum"),
        (("a star", 3.0, 2, 0, None, "sideways"), "not in the list of choices"),
        (("a star", 3.0, 2, 0, bench.request_args("text-to-image", 1)[4], "Edge map (white edges on black)"),
         "An edge map must be 32×32 pixels (the pipeline's size), got 64×64; pick"),
    ],
}


def test_bad_input_gets_a_clear_error_and_the_space_keeps_serving(space):
    from gradio_client.exceptions import AppError

    name, url = space
    client = bench.new_client(url)
    try:
        for arguments, message in BAD_INPUTS[name]:
            with pytest.raises(AppError, match=re.escape(message)):
                client.predict(*arguments, api_name=bench.API_NAMES[name])
        assert client.predict(*bench.request_args(name, 0), api_name=bench.API_NAMES[name])  # still serving
    finally:
        client.close()

