"""The Noto colour emoji rendered with their Unicode names: image–caption pairs (and object masks), fully offline.

Two Debian packages hold everything: ``fonts-noto-color-emoji`` (``NotoColorEmoji.ttf``, bitmap glyphs at 109 px)
and ``unicode-data`` (``emoji/emoji-test.txt``: every emoji with its status, name, group and subgroup).
`fetch_emoji` takes installed copies, or else fetches the packages through the package registry
(``apt-get download`` + ``dpkg -x``, nothing is installed system-wide) and caches the two files.
`parse_emoji_test` keeps the fully-qualified emoji (the RGI set, one per distinct name); `render_emoji` draws one
with Pillow, crops it to its alpha, downsamples it and returns the RGB image on white with the alpha as an object
mask; `load_emoji` caches the whole set as a `datasets.DatasetDict`, split train/test by a hash of the name
(`whitebox_hf.data.openclipart.split_of`), so the split never depends on the font version or the file order.
Emoji the font has no glyph for (newer than the font) render empty and are skipped.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..utils.validation import check_positive_int
from .debian_packages import download_debian_package
from .fashion_mnist import DataUnavailableError, default_cache_dir
from .openclipart import make_caption, split_of

logger = logging.getLogger(__name__)

__all__ = ["EMOJI_FONT_SIZE", "emoji_caption", "fetch_emoji", "load_emoji", "parse_emoji_test", "render_emoji"]

FONT_PACKAGE, FONT_FILE = "fonts-noto-color-emoji", Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
NAMES_PACKAGE, NAMES_FILE = "unicode-data", Path("/usr/share/unicode/emoji/emoji-test.txt")
# The only size the font's CBDT bitmaps come in: FreeType refuses any other for this font.
EMOJI_FONT_SIZE = 109
HOW_TO_GET_IT = (
    "The Noto colour emoji or the Unicode emoji names could not be found. Fetch them with\n"
    "  python -c 'from whitebox_hf.data import fetch_emoji; fetch_emoji()'\n"
    "(Debian/Ubuntu: apt-get download fonts-noto-color-emoji unicode-data, unpacked into the cache), or install\n"
    "  sudo apt-get install fonts-noto-color-emoji unicode-data"
)
# Bumped whenever the rendering, captions or columns change, so a stale prepared data set is never reused.
_FORMAT_VERSION = 1
_LINE = re.compile(r"^(?P<codes>[0-9A-Fa-f ]+?)\s*;\s*(?P<status>[a-z-]+)\s*#\s*(?P<emoji>\S+)\s+E\d+\.\d+\s+"
                   r"(?P<name>.+?)\s*$")


def _cache_folder(cache_dir) -> Path:
    return Path(cache_dir or default_cache_dir()) / "noto-emoji"


def fetch_emoji(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"font": NotoColorEmoji.ttf, "names": emoji-test.txt}``: installed copies, or copies cached under
    ``cache_dir/noto-emoji`` (fetched from the Debian packages the first time).

    Raises:
        DataUnavailableError: no installed or cached copy, and a package could not be downloaded.
    """
    folder = _cache_folder(cache_dir)
    found = {}
    for key, package, installed in (("font", FONT_PACKAGE, FONT_FILE), ("names", NAMES_PACKAGE, NAMES_FILE)):
        cached = folder / installed.name
        if installed.is_file():
            found[key] = installed
            continue
        if not cached.is_file():
            with tempfile.TemporaryDirectory() as workdir:
                extracted = download_debian_package(package, workdir, HOW_TO_GET_IT)
                source = extracted / installed.relative_to("/")
                if not source.is_file():
                    raise DataUnavailableError(f"{package} holds no {installed}.\n{HOW_TO_GET_IT}")
                folder.mkdir(parents=True, exist_ok=True)
                # Copy then rename, so an interrupted copy never looks like a complete cache.
                partial = cached.with_name(cached.name + ".partial")
                shutil.copyfile(source, partial)
                partial.rename(cached)
            logger.info("%s cached in %s", installed.name, folder)
        found[key] = cached
    return found


def parse_emoji_test(path: str | os.PathLike) -> list[dict]:
    """The fully-qualified emoji of an ``emoji-test.txt``, in file order: dicts with ``emoji`` (the string),
    ``codepoints`` (``"1F600"``, space-separated), ``name`` (``"grinning face"``), ``group`` and ``subgroup``
    (from the preceding ``# group:`` / ``# subgroup:`` headers). Components, minimally-qualified and unqualified
    forms are left out: they repeat a fully-qualified emoji's name or are not emoji on their own.

    Raises:
        OSError: the file cannot be read.
        ValueError: a data line does not parse, or a fully-qualified emoji comes before any group header.
    """
    group = subgroup = None
    entries = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if line.startswith("# group:"):
                group, subgroup = line.split(":", 1)[1].strip(), None
                continue
            if line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
                continue
            if not line.strip() or line.startswith("#"):
                continue
            match = _LINE.match(line)
            if match is None:
                raise ValueError(f"{path}:{number}: not an emoji-test data line: {line!r}")
            if match["status"] != "fully-qualified":
                continue
            if group is None or subgroup is None:
                raise ValueError(f"{path}:{number}: emoji before any '# group:' / '# subgroup:' header")
            codes = " ".join(match["codes"].split())
            emoji = "".join(chr(int(code, 16)) for code in codes.split())
            entries.append({"emoji": emoji, "codepoints": codes, "name": match["name"], "group": group,
                            "subgroup": subgroup})
    return entries


def emoji_caption(name: str, group: str, subgroup: str) -> str:
    """``"Grinning face. Keywords: smileys & emotion, face-smiling"``: the name plus group and subgroup, in the
    form of the Openclipart captions (`whitebox_hf.data.openclipart.make_caption`)."""
    return make_caption(name, [group, subgroup])


def _canvas_guess(emoji: str, font) -> tuple[int, int]:
    """A canvas that holds the drawing of ``emoji`` in any font whose glyphs are at most twice the font size wide and
    tall per code point (Noto's bitmap strike: 136 × 128 px at size 109)."""
    return 2 * font.size * len(emoji) + 8, 2 * font.size + 8


def render_emoji(emoji: str, font, image_size: int = 32) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rgb, mask)`` of one emoji: uint8 ``(image_size, image_size, 3)`` composited on white and a bool
    ``(image_size, image_size)`` object mask (downsampled alpha ≥ 0.5); None when the font has no glyph (nothing
    drawn). The glyph is cropped to its alpha's bounding box, centred on a transparent square and downsampled with
    Lanczos (Pillow resizes RGBA with premultiplied alpha, so no dark fringe)."""
    from PIL import Image, ImageDraw

    check_positive_int("image_size", image_size)

    def draw(size):
        canvas = Image.new("RGBA", size, (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((0, 0), emoji, font=font, embedded_color=True)
        return canvas, canvas.getchannel("A").getbbox()

    # Drawn first on a canvas guessed large enough, not one measured with `font.getbbox`: measuring lays out and
    # rasterises the text a second time (a fifth of the rendering time). A drawing that reaches the guessed canvas's
    # edge, or shows nothing on it, may lie partly or wholly outside it, so it is drawn again on the measured canvas;
    # the pixels are the same either way.
    canvas, box = draw(_canvas_guess(emoji, font))
    if box is None or box[2] >= canvas.width or box[3] >= canvas.height:
        left, top, right, bottom = font.getbbox(emoji)
        canvas, box = draw((max(right, 1) + 8, max(bottom, 1) + 8))
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    small = square.resize((image_size, image_size), Image.Resampling.LANCZOS)
    white = Image.new("RGBA", small.size, (255, 255, 255, 255))
    rgb = np.asarray(Image.alpha_composite(white, small).convert("RGB"))
    mask = np.asarray(small.getchannel("A")) >= 128
    return rgb, mask


def load_emoji(image_size: int = 32, cache_dir: str | os.PathLike | None = None, test_fraction: float = 0.1,
               font_path: str | os.PathLike | None = None, names_path: str | os.PathLike | None = None,
               progress: bool = True):
    """The fully-qualified Noto colour emoji as a `datasets.DatasetDict` with ``train`` and ``test`` splits.

    Columns: ``image`` (`Image`, RGB ``image_size``² on white), ``mask`` (`Image`, mode L, 255 on the emoji),
    ``caption`` (`emoji_caption`), ``name``, ``emoji``, ``group``, ``subgroup``. The split is by
    `split_of` of the name.

    Args:
        image_size: side of the rendered images.
        cache_dir: where the fetched files and the prepared data set live (default ``~/.cache/whitebox_hf``).
        test_fraction: share of the names (by hash) in the test split.
        font_path, names_path: a user's own ``NotoColorEmoji.ttf`` / ``emoji-test.txt`` (default: `fetch_emoji`).
        progress: show a tqdm bar while rendering.

    Raises:
        DataUnavailableError: the files are missing and could not be fetched.
        ValueError: a bad ``image_size`` or ``test_fraction``.
        OSError: ``font_path`` or ``names_path`` is not a file.
    """
    import datasets
    from PIL import Image, ImageFont
    from tqdm.auto import tqdm

    check_positive_int("image_size", image_size)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, float) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be a float in (0, 1), got {test_fraction!r}")
    for name, value in (("font_path", font_path), ("names_path", names_path)):
        if value is not None and not Path(value).is_file():
            raise OSError(f"`{name}` {value} is not a file")
    own_files = font_path is not None or names_path is not None
    files = {} if font_path is not None and names_path is not None else fetch_emoji(cache_dir)
    font_file, names_file = Path(font_path or files["font"]), Path(names_path or files["names"])
    prepared = (_cache_folder(cache_dir) / str(image_size) / f"prepared_v{_FORMAT_VERSION}_test{test_fraction:g}")
    if not own_files and (prepared / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(prepared))

    entries = parse_emoji_test(names_file)
    font = ImageFont.truetype(str(font_file), EMOJI_FONT_SIZE)
    features = datasets.Features({
        "image": datasets.Image(), "mask": datasets.Image(), "caption": datasets.Value("string"),
        "name": datasets.Value("string"), "emoji": datasets.Value("string"), "group": datasets.Value("string"),
        "subgroup": datasets.Value("string"),
    })
    columns = {split: {key: [] for key in features} for split in ("train", "test")}
    skipped = 0
    for entry in tqdm(entries, disable=not progress, desc=f"emoji {image_size}px", unit="emoji"):
        rendered = render_emoji(entry["emoji"], font, image_size)
        if rendered is None:
            skipped += 1
            continue
        rgb, mask = rendered
        column = columns[split_of(entry["name"], test_fraction)]
        column["image"].append(Image.fromarray(rgb))
        column["mask"].append(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"))
        column["caption"].append(emoji_caption(entry["name"], entry["group"], entry["subgroup"]))
        for key in ("name", "emoji", "group", "subgroup"):
            column[key].append(entry[key])
    logger.info("emoji: %d of %d rendered (%d without a glyph in %s)", len(entries) - skipped, len(entries), skipped,
                font_file.name)
    dataset = datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(column, features=features) for split, column in columns.items()})
    if own_files or any(len(column["name"]) == 0 for column in columns.values()):
        # A user's own files are not cached under the shared name; `datasets` cannot reload an empty split.
        return dataset
    dataset.save_to_disk(str(prepared))
    return datasets.load_from_disk(str(prepared))
