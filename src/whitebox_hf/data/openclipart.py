"""Openclipart image–caption pairs (public domain) as a `datasets.DatasetDict`, fully offline.

Debian's ``openclipart-svg`` package installs about 8 100 SVG drawings under
``/usr/share/openclipart/svg/<category>/...``. Each file carries RDF metadata: the drawing's title is the
``dc:title`` that is a *direct child* of ``cc:Work`` (later ``dc:title`` elements sit inside ``cc:Agent`` and
name the author), and its keywords are the ``rdf:li`` items of ``dc:subject/rdf:Bag``. `load_openclipart`
turns every drawing into a caption (``"Apple pie. Keywords: food, dessert"``), rasterises it once with
``rsvg-convert`` (Debian ``librsvg2-bin``) into a cache folder, and splits the files into train and test by a
hash of their path, so the split never depends on the machine, the file order or which files rendered.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..utils.validation import check_positive_int
from .fashion_mnist import DataUnavailableError, default_cache_dir

logger = logging.getLogger(__name__)

__all__ = [
    "OPENCLIPART_ROOT",
    "clean_category_name",
    "find_openclipart_svgs",
    "load_openclipart",
    "make_caption",
    "parse_openclipart_metadata",
    "render_svg",
    "split_of",
]

OPENCLIPART_ROOT = Path("/usr/share/openclipart/svg")
RENDERER = "rsvg-convert"
HOW_TO_GET_IT = (
    "Openclipart could not be found. Install it with\n"
    "  sudo apt-get install openclipart-svg librsvg2-bin\n"
    "(the SVGs land in /usr/share/openclipart/svg, rsvg-convert rasterises them), or pass the folder of your\n"
    "own copy as root=... (one sub-folder per category)."
)

_CC_WORK, _DC_TITLE, _DC_SUBJECT, _RDF_LI = "Work", "title", "subject", "li"
_DC_NAMESPACE = "http://purl.org/dc/elements/1.1/"
# Bumped whenever the captions or columns change, so a stale prepared data set is never reused.
_FORMAT_VERSION = 2


def _local_name(tag: str) -> str:
    # Files use both the old (web.resource.org/cc/) and the new (creativecommons.org/ns#) cc namespace, so
    # elements are matched by local name rather than by a fixed namespace URI.
    return tag.rsplit("}", 1)[-1]


def _clean_text(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").replace("_", " ")).strip()


def parse_openclipart_metadata(path: str | os.PathLike) -> dict:
    """``{"title": str, "keywords": list[str], "description": str}`` of one Openclipart SVG.

    The title is the ``dc:title`` directly under ``cc:Work``; author names (``dc:title`` inside ``cc:Agent``)
    are ignored. Missing fields are empty. Only the file's head is parsed: parsing stops at ``</metadata>``.

    Raises:
        ValueError: the file is not well-formed XML before its metadata ends.
    """
    title, description, keywords = "", "", []
    stack: list[str] = []
    try:
        for event, element in ET.iterparse(str(path), events=("start", "end")):
            name = _local_name(element.tag)
            if event == "start":
                stack.append(name)
                continue
            stack.pop()
            parent = stack[-1] if stack else ""
            if parent == _CC_WORK and element.tag.startswith("{" + _DC_NAMESPACE):
                if name == _DC_TITLE and not title:
                    title = _clean_text("".join(element.itertext()))
                elif name == "description" and not description:
                    description = _clean_text("".join(element.itertext()))
            elif name == _RDF_LI and len(stack) >= 3 and stack[-2] == _DC_SUBJECT and stack[-3] == _CC_WORK:
                keyword = _clean_text(element.text)
                if keyword:
                    keywords.append(keyword)
            elif name == "metadata":
                break
    except ET.ParseError as error:
        raise ValueError(f"{path} is not a well-formed SVG: {error}") from error
    return {"title": title, "keywords": keywords, "description": description}


def make_caption(title: str, keywords: list[str], max_keywords: int = 8) -> str:
    """``"Apple pie. Keywords: food, dessert"``: the title (first letter upper-cased) plus up to
    ``max_keywords`` distinct keywords that do not repeat the title; just ``"Title."`` without keywords."""
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"`title` must be a non-empty string, got {title!r}")
    title = _clean_text(title)
    title = title[0].upper() + title[1:]
    # "hash" is a placeholder tag the Openclipart export left on many drawings; it says nothing about them.
    seen, kept = {title.lower(), "hash"}, []
    for keyword in keywords:
        keyword = _clean_text(keyword).lower()
        if keyword and keyword not in seen:
            seen.add(keyword)
            kept.append(keyword)
    kept = kept[:max_keywords]
    caption = title if title.endswith((".", "!", "?")) else title + "."
    return f"{caption} Keywords: {', '.join(kept)}" if kept else caption


def clean_category_name(name: str) -> str:
    """A category folder name as words: ``"signs_and_symbols"`` → ``"signs and symbols"``."""
    return _clean_text(name.replace("-", " ")).lower()


def split_of(relative_path: str, test_fraction: float = 0.1) -> str:
    """``"test"`` or ``"train"`` for a file, from the SHA-1 of its path relative to the root (POSIX form):
    deterministic, independent of the file order and of which other files exist."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}")
    digest = hashlib.sha1(Path(relative_path).as_posix().encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2.0**64 < test_fraction else "train"


def find_openclipart_svgs(root: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """Sorted ``(relative_path, category)`` of every ``*.svg`` under ``root/<category>/`` (any depth).

    Raises:
        DataUnavailableError: ``root`` does not exist or holds no SVG in a category folder.
    """
    root = Path(root) if root is not None else OPENCLIPART_ROOT
    if not root.is_dir():
        raise DataUnavailableError(f"{root} does not exist.\n{HOW_TO_GET_IT}")
    found = []
    for category_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for svg in sorted(category_dir.rglob("*.svg")):
            found.append((svg.relative_to(root).as_posix(), category_dir.name))
    if not found:
        raise DataUnavailableError(f"no SVG files in category folders under {root}.\n{HOW_TO_GET_IT}")
    return found


def render_svg(svg_path: str | os.PathLike, png_path: str | os.PathLike, size: int = 32,
               timeout: float = 60.0) -> bool:
    """Rasterise ``svg_path`` to a ``size``×``size`` RGB PNG on white; True on success.

    ``rsvg-convert -a`` keeps the aspect ratio, so the drawing is centred on a white square afterwards.
    A drawing that fails to render (malformed, too slow) returns False and leaves no PNG behind.
    """
    from PIL import Image

    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    partial = png_path.with_suffix(".part.png")
    command = [RENDERER, "-w", str(size), "-h", str(size), "-a", "-b", "white", str(svg_path), "-o", str(partial)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)
        with Image.open(partial) as drawn:
            drawn = drawn.convert("RGB")
            canvas = Image.new("RGB", (size, size), "white")
            canvas.paste(drawn.crop((0, 0, min(drawn.width, size), min(drawn.height, size))),
                         ((size - min(drawn.width, size)) // 2, (size - min(drawn.height, size)) // 2))
        canvas.save(png_path)
        return True
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        logger.debug("could not render %s: %s", svg_path, error)
        return False
    finally:
        partial.unlink(missing_ok=True)


def _default_cache(root: Path, image_size: int) -> Path:
    base = default_cache_dir() / "openclipart" / str(image_size)
    if root.resolve() == OPENCLIPART_ROOT.resolve():
        return base
    # Another root (a user's copy, a test folder) gets its own sub-folder so caches never mix.
    return base / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]


def load_openclipart(
    root: str | os.PathLike | None = None,
    image_size: int = 32,
    cache_dir: str | os.PathLike | None = None,
    test_fraction: float = 0.1,
    num_workers: int = 2,
    progress: bool = True,
):
    """Openclipart as a `datasets.DatasetDict` with ``train`` and ``test`` splits.

    Columns: ``image`` (`Image`, RGB ``image_size``²), ``caption`` (title plus keywords), ``title``,
    ``label`` (`ClassLabel` over the category folders, names cleaned by `clean_category_name`) and ``path``
    (relative to ``root``). Drawings without a title or that fail to render are skipped.

    Args:
        root: folder with one sub-folder per category (default ``/usr/share/openclipart/svg``).
        image_size: side of the rasterised images (32 keeps CPU training fast).
        cache_dir: where the PNGs and the prepared data set live (default
            ``~/.cache/whitebox_hf/openclipart/<image_size>/``). Rendering happens once; later calls load
            the prepared data set.
        test_fraction: share of the files (by path hash) in the test split.
        num_workers: parallel ``rsvg-convert`` processes.
        progress: show a tqdm bar while rendering.

    Raises:
        DataUnavailableError: the SVG folder or ``rsvg-convert`` is missing.
        ValueError: a bad ``image_size``, ``test_fraction`` or ``num_workers``.
    """
    import datasets
    from PIL import Image
    from tqdm.auto import tqdm

    check_positive_int("image_size", image_size)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction!r}")
    check_positive_int("num_workers", num_workers)
    root = Path(root) if root is not None else OPENCLIPART_ROOT
    cache = Path(cache_dir) if cache_dir is not None else _default_cache(root, image_size)
    prepared = cache / f"prepared_v{_FORMAT_VERSION}_test{test_fraction:g}"
    if (prepared / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(prepared))

    files = find_openclipart_svgs(root)
    if shutil.which(RENDERER) is None:
        raise DataUnavailableError(f"`{RENDERER}` is not installed (Debian package librsvg2-bin).\n{HOW_TO_GET_IT}")
    categories = sorted({category for _, category in files})

    def prepare(item):
        relative, category = item
        try:
            metadata = parse_openclipart_metadata(root / relative)
        except ValueError:
            return None
        if not metadata["title"]:
            return None
        png = cache / "png" / (relative[: -len(".svg")] + ".png")
        if not png.is_file() and not render_svg(root / relative, png, image_size):
            return None
        return relative, category, metadata

    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        results = list(tqdm(pool.map(prepare, files), total=len(files), disable=not progress,
                            desc=f"openclipart {image_size}px", unit="svg"))
    kept = [r for r in results if r is not None]
    logger.info("openclipart: %d of %d drawings kept (no title or not renderable: %d)", len(kept), len(files),
                len(files) - len(kept))

    features = datasets.Features({
        "image": datasets.Image(),
        "caption": datasets.Value("string"),
        "title": datasets.Value("string"),
        "label": datasets.ClassLabel(names=[clean_category_name(c) for c in categories]),
        "path": datasets.Value("string"),
    })
    columns = {split: {name: [] for name in features} for split in ("train", "test")}
    for relative, category, metadata in kept:
        png = cache / "png" / (relative[: -len(".svg")] + ".png")
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("RGB"))
        column = columns[split_of(relative, test_fraction)]
        column["image"].append(Image.fromarray(pixels))
        column["caption"].append(make_caption(metadata["title"], metadata["keywords"]))
        column["title"].append(metadata["title"])
        column["label"].append(categories.index(category))
        column["path"].append(relative)
    dataset = datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(column, features=features) for split, column in columns.items()}
    )
    if any(len(column["path"]) == 0 for column in columns.values()):
        # `datasets` cannot reload an empty split from disk; only tiny folders get here, so skip the cache.
        return dataset
    dataset.save_to_disk(str(prepared))
    return datasets.load_from_disk(str(prepared))
