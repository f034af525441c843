"""Tests of the Openclipart loader on three tiny hand-written SVGs (no Debian package needed)."""

import shutil

import pytest

from whitebox_hf.data import DataUnavailableError
from whitebox_hf.data.openclipart import (
    clean_category_name,
    find_openclipart_svgs,
    load_openclipart,
    make_caption,
    parse_openclipart_metadata,
    split_of,
)

SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/" width="40" height="20">
  <metadata>
    <rdf:RDF>
      <cc:Work rdf:about="">
        {title}
        <dc:subject>
          <rdf:Bag>
            {keywords}
          </rdf:Bag>
        </dc:subject>
        <dc:publisher><cc:Agent><dc:title>Openclipart</dc:title></cc:Agent></dc:publisher>
        <dc:creator><cc:Agent><dc:title>Some Author</dc:title></cc:Agent></dc:creator>
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <rect x="0" y="0" width="40" height="20" fill="{colour}"/>
</svg>
"""


def write_svg(path, title, keywords, colour="red"):
    path.parent.mkdir(parents=True, exist_ok=True)
    title_xml = f"<dc:title>{title}</dc:title>" if title else ""
    keyword_xml = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    path.write_text(SVG.format(title=title_xml, keywords=keyword_xml, colour=colour))


@pytest.fixture
def clipart_root(tmp_path):
    root = tmp_path / "svg"
    write_svg(root / "food" / "apple_pie.svg", "Apple pie", ["food", "dessert", "hash", ""], "orange")
    write_svg(root / "signs_and_symbols" / "arrows" / "red_arrow.svg", "red arrow", ["arrow", "sign"], "red")
    write_svg(root / "food" / "no_title.svg", "", ["food"], "green")  # skipped: no title
    return root


def test_metadata_takes_the_work_title_not_the_author(clipart_root):
    metadata = parse_openclipart_metadata(clipart_root / "food" / "apple_pie.svg")
    assert metadata["title"] == "Apple pie"
    assert metadata["keywords"] == ["food", "dessert", "hash"]
    assert parse_openclipart_metadata(clipart_root / "food" / "no_title.svg")["title"] == ""


def test_caption_and_category_names():
    assert make_caption("Apple pie", ["food", "dessert", "hash", "Food", "apple pie"]) == \
        "Apple pie. Keywords: food, dessert"
    assert make_caption("red  arrow", []) == "Red arrow."
    assert clean_category_name("signs_and_symbols") == "signs and symbols"
    with pytest.raises(ValueError, match="title"):
        make_caption("  ", ["x"])


def test_split_is_by_file_and_deterministic():
    paths = [f"cat{i % 3}/file_{i}.svg" for i in range(2000)]
    splits = [split_of(p) for p in paths]
    assert splits == [split_of(p) for p in reversed(paths)][::-1]  # independent of order
    share = splits.count("test") / len(splits)
    assert 0.07 < share < 0.13
    with pytest.raises(ValueError, match="test_fraction"):
        split_of("a.svg", test_fraction=1.5)


def test_find_and_missing_root(clipart_root, tmp_path):
    found = find_openclipart_svgs(clipart_root)
    assert ("signs_and_symbols/arrows/red_arrow.svg", "signs_and_symbols") in found
    assert len(found) == 3
    with pytest.raises(DataUnavailableError, match="apt-get install openclipart-svg"):
        find_openclipart_svgs(tmp_path / "missing")


def test_bad_arguments(clipart_root, tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        load_openclipart(clipart_root, image_size=0, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="num_workers"):
        load_openclipart(clipart_root, num_workers=0, cache_dir=tmp_path / "c")


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert is not installed: a Debian package (librsvg2-bin), outside the pip install; "
                    "tools/install_system_packages.sh installs it")
def test_load_renders_splits_and_caches(clipart_root, tmp_path):
    cache = tmp_path / "cache"
    dataset = load_openclipart(clipart_root, image_size=16, cache_dir=cache, test_fraction=0.85, progress=False)
    assert dataset["train"].num_rows == 1 and dataset["test"].num_rows == 1  # path hashes 0.91 and 0.81
    rows = {row["path"]: row for split in ("train", "test") for row in dataset[split]}
    assert set(rows) == {"food/apple_pie.svg", "signs_and_symbols/arrows/red_arrow.svg"}  # untitled one skipped
    for path, row in rows.items():
        assert row["image"].size == (16, 16) and row["image"].mode == "RGB"
        assert path in [r["path"] for r in dataset[split_of(path, 0.85)]]
    pie = rows["food/apple_pie.svg"]
    assert pie["caption"] == "Apple pie. Keywords: food, dessert"
    names = dataset["train"].features["label"].names
    assert names == ["food", "signs and symbols"]
    assert names[pie["label"]] == "food"
    # The 40×20 drawing keeps its aspect ratio: white bands above and below, colour in the middle.
    pixels = pie["image"].load()
    assert pixels[8, 0] == (255, 255, 255) and pixels[8, 8] != (255, 255, 255)
    # Second call: served from the prepared cache, same content.
    again = load_openclipart(clipart_root, image_size=16, cache_dir=cache, test_fraction=0.85, progress=False)
    assert sorted(list(again["train"]["path"]) + list(again["test"]["path"])) == sorted(rows)
    assert (cache / "prepared_v2_test0.85" / "dataset_dict.json").is_file()
