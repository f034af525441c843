"""Tests of the Noto emoji loader: parsing on a tiny hand-written emoji-test.txt always, rendering and the
cached data set on the real font when it could be fetched (`make test` fetches it first)."""

import numpy as np
import pytest

from whitebox_hf.data import DataUnavailableError
from whitebox_hf.data.caption_images import load_caption_images
from whitebox_hf.data.emoji import emoji_caption, fetch_emoji, load_emoji, parse_emoji_test, render_emoji
from whitebox_hf.data.openclipart import split_of

FIXTURE = """# emoji-test.txt
# Format: code points; status # emoji name

# group: Smileys & Emotion

# subgroup: face-smiling
1F600                                                  ; fully-qualified     # \U0001F600 E1.0 grinning face
263A FE0F                                              ; fully-qualified     # \u263a\ufe0f E0.6 smiling face
263A                                                   ; unqualified         # \u263a E0.6 smiling face

# subgroup: face-affection
1F618                                                  ; fully-qualified     # \U0001F618 E0.6 face blowing a kiss

# group: Component

# subgroup: skin-tone
1F3FB                                                  ; component           # \U0001F3FB E1.0 light skin tone

# group: Flags

# subgroup: country-flag
1F1FA 1F1F8                                            ; fully-qualified     # \U0001F1FA\U0001F1F8 E0.6 flag: United States
"""


@pytest.fixture
def emoji_test_file(tmp_path):
    path = tmp_path / "emoji-test.txt"
    path.write_text(FIXTURE, encoding="utf-8")
    return path


def test_parse_keeps_fully_qualified_with_their_headers(emoji_test_file):
    entries = parse_emoji_test(emoji_test_file)
    assert [e["name"] for e in entries] == ["grinning face", "smiling face", "face blowing a kiss",
                                            "flag: United States"]
    assert entries[1]["emoji"] == "\u263a\ufe0f" and entries[1]["codepoints"] == "263A FE0F"
    assert (entries[2]["group"], entries[2]["subgroup"]) == ("Smileys & Emotion", "face-affection")
    assert (entries[3]["group"], entries[3]["subgroup"]) == ("Flags", "country-flag")
    assert entries[3]["emoji"] == "\U0001F1FA\U0001F1F8"


def test_parse_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("# group: G\n# subgroup: s\nnot a data line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:3"):
        parse_emoji_test(path)
    path.write_text("1F600 ; fully-qualified # \U0001F600 E1.0 grinning face\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        parse_emoji_test(path)


def test_caption_form():
    assert emoji_caption("grinning face", "Smileys & Emotion", "face-smiling") == \
        "Grinning face. Keywords: smileys & emotion, face-smiling"


def test_split_is_by_name_hash(emoji_test_file):
    names = [e["name"] for e in parse_emoji_test(emoji_test_file)]
    assert [split_of(n) for n in names] == [split_of(n) for n in names]


def _real_files():
    try:
        return fetch_emoji()
    except DataUnavailableError as error:
        pytest.skip(f"the Noto emoji could not be fetched: {error}")


def test_render_real_emoji_has_object_and_white_background():
    from PIL import ImageFont

    files = _real_files()
    font = ImageFont.truetype(str(files["font"]), 109)
    rgb, mask = render_emoji("\U0001F600", font, 32)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8 and mask.shape == (32, 32) and mask.dtype == bool
    assert 0.3 < mask.mean() < 1.0
    assert (rgb[~mask] > 200).all(axis=-1).mean() > 0.9  # background composited on white
    yellow = rgb[mask].astype(int)
    assert (yellow[:, 0] > yellow[:, 2]).mean() > 0.5  # the grinning face is yellow, not blue
    with pytest.raises(ValueError, match="image_size"):
        render_emoji("\U0001F600", font, 0)


def test_load_real_emoji_and_the_combined_loader(emoji_test_file):
    files = _real_files()
    small = load_emoji(image_size=16, names_path=emoji_test_file, font_path=files["font"], progress=False)
    assert sorted(list(small["train"]["name"]) + list(small["test"]["name"])) == sorted(
        ["grinning face", "smiling face", "face blowing a kiss", "flag: United States"])
    for split in ("train", "test"):
        assert all(split_of(n) == split for n in small[split]["name"])
    row = (small["train"] if len(small["train"]) else small["test"])[0]
    assert row["image"].size == (16, 16) and row["image"].mode == "RGB" and row["mask"].mode == "L"

    combined = load_caption_images(["emoji"], image_size=32)
    assert len(combined["train"]) > 3000 and len(combined["test"]) > 200
    assert set(combined["test"]["source"]) == {"emoji"}
    assert not set(combined["train"]["caption"]) & set(combined["test"]["caption"])


def test_combined_loader_rejects_bad_sources():
    with pytest.raises(ValueError, match="sources"):
        load_caption_images("emoji")
    with pytest.raises(ValueError, match="sources"):
        load_caption_images(["emoji", "photos"])
    with pytest.raises(ValueError, match="sources"):
        load_caption_images(["emoji", "emoji"])
    with pytest.raises(ValueError, match="test_fraction"):
        load_caption_images(["emoji"], test_fraction=1)


def test_a_drawing_that_reaches_the_guessed_canvas_edge_is_redrawn_on_the_measured_canvas(monkeypatch):
    from PIL import ImageFont

    from whitebox_hf.data import emoji as emoji_module

    font = ImageFont.truetype(str(_real_files()["font"]), emoji_module.EMOJI_FONT_SIZE)
    samples = ("\U0001F600", "\U0001F1FA\U0001F1F8", "\U0001F468\u200D\U0001F469\u200D\U0001F467")  # face, flag, family
    expected = [render_emoji(text, font, 24) for text in samples]
    monkeypatch.setattr(emoji_module, "_canvas_guess", lambda text, font: (20, 20))  # clips every glyph
    for text, (rgb, mask) in zip(samples, expected):
        clipped_rgb, clipped_mask = render_emoji(text, font, 24)
        np.testing.assert_array_equal(clipped_rgb, rgb)
        np.testing.assert_array_equal(clipped_mask, mask)
    assert render_emoji("A", font, 24) is None  # no glyph in the font: nothing drawn on either canvas
