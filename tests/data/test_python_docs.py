"""The Python-docs corpus: a split by whole documents, deterministic, cached, with clear errors.

Every test but the last runs on a small fake ``_sources`` tree, so they need neither apt nor the real package.
"""

import shutil

import pytest

from whitebox_hf.cli import main
from whitebox_hf.data import DataUnavailableError, load_python_docs
from whitebox_hf.data.python_docs import find_python_docs_sources, split_documents


@pytest.fixture
def sources(tmp_path):
    """A fake ``_sources`` tree: 20 documents in three folders, plus files that are not documents."""
    root = tmp_path / "_sources"
    contents = {}
    for index in range(20):
        folder = ("library", "c-api", "howto")[index % 3]
        relative = f"{folder}/doc{index:02d}.rst.txt" if index else "index.rst.txt"
        text = f"Title {index}\n{'=' * 8}\n\n.. function:: f{index}(x)\n\n   Return *x* — ünïcødé {index}.\n"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
        contents[relative] = text
    (root / "library" / "notes.txt").write_text("not a document")
    (root / "_static").mkdir()
    (root / "_static" / "style.css").write_text("body {}")
    return root, contents


def test_split_is_by_document_and_covers_every_file(sources):
    root, contents = sources
    dataset = load_python_docs(data_dir=root, validation_fraction=0.25)
    assert set(dataset) == {"train", "validation"}
    assert dataset["train"].column_names == ["text", "path"]
    train, validation = dataset["train"]["path"], dataset["validation"]["path"]
    assert not set(train) & set(validation)
    assert sorted([*train, *validation]) == sorted(contents)
    assert len(validation) == 5
    for split in dataset.values():
        for row in split:
            assert row["text"] == contents[row["path"]]


def test_split_is_deterministic_and_depends_on_the_seed(sources):
    root, _ = sources
    first = load_python_docs(data_dir=root, validation_fraction=0.25)
    again = load_python_docs(data_dir=root, validation_fraction=0.25)
    other = load_python_docs(data_dir=root, validation_fraction=0.25, seed=1)
    assert list(first["validation"]["path"]) == list(again["validation"]["path"])
    assert list(first["train"]["text"]) == list(again["train"]["text"])
    assert list(first["validation"]["path"]) != list(other["validation"]["path"])


def test_split_ignores_input_order_and_keeps_both_sides_non_empty():
    paths = [f"doc{index}.rst.txt" for index in range(40)]
    train, validation = split_documents(paths, validation_fraction=0.1, seed=3)
    assert (train, validation) == split_documents(paths[::-1], validation_fraction=0.1, seed=3)
    assert len(validation) == 4 and len(train) == 36
    # Tiny fractions and corpora still give one document to each side.
    assert [len(side) for side in split_documents(["a", "b"], validation_fraction=0.01)] == [1, 1]
    assert [len(side) for side in split_documents(["a", "b", "c"], validation_fraction=0.99)] == [1, 2]


@pytest.mark.parametrize("fraction", [0, 0.0, 1, 1.0, -0.1, 1.5])
def test_validation_fraction_outside_the_open_interval_is_refused(sources, fraction):
    root, _ = sources
    with pytest.raises(ValueError, match="validation_fraction"):
        load_python_docs(data_dir=root, validation_fraction=fraction)


def test_bad_argument_types_and_too_few_documents_are_refused():
    with pytest.raises(TypeError, match="validation_fraction"):
        split_documents(["a", "b"], validation_fraction="0.1")
    with pytest.raises(TypeError, match="seed"):
        split_documents(["a", "b"], seed=1.5)
    with pytest.raises(ValueError, match="two documents"):
        split_documents(["a", "a"])


def test_prepared_dataset_is_cached_and_reused(sources, tmp_path):
    root, contents = sources
    cache = tmp_path / "cache"
    shutil.copytree(root, cache / "python-docs" / "raw")
    first = load_python_docs(cache_dir=cache, fetch=False)
    assert (cache / "python-docs" / "datasetdict-val0.05-seed0" / "dataset_dict.json").is_file()
    # Once prepared, the raw files are no longer needed.
    shutil.rmtree(cache / "python-docs" / "raw")
    second = load_python_docs(cache_dir=cache, fetch=False)
    assert list(second["validation"]["path"]) == list(first["validation"]["path"])
    assert len(second["train"]) + len(second["validation"]) == len(contents)
    # Another split setting is not served from the first one's cache.
    with pytest.raises(DataUnavailableError):
        load_python_docs(cache_dir=cache, fetch=False, validation_fraction=0.2)


def test_missing_data_fails_with_a_how_to(tmp_path):
    with pytest.raises(DataUnavailableError, match="whitebox-hf data fetch python-docs"):
        load_python_docs(cache_dir=tmp_path / "empty-cache", fetch=False)
    (tmp_path / "no-docs").mkdir()
    with pytest.raises(DataUnavailableError, match="data_dir="):
        load_python_docs(data_dir=tmp_path / "no-docs")


def test_finds_the_sources_of_any_python_doc_package(tmp_path):
    assert find_python_docs_sources(tmp_path) is None
    sources = tmp_path / "usr/share/doc/python3.12/html/_sources"
    (sources / "library").mkdir(parents=True)
    (sources / "library" / "os.rst.txt").write_text("os")
    assert find_python_docs_sources(tmp_path) == sources


def test_cli_fetch_reports_documents_and_characters(sources, tmp_path, capsys):
    root, contents = sources
    assert main(["data", "fetch", "python-docs", "--data-dir", str(root)]) == 0
    output = capsys.readouterr().out
    dataset = load_python_docs(data_dir=root)
    for split, part in dataset.items():
        characters = sum(len(contents[path]) for path in part["path"])
        assert f"{split}: {len(part)} documents, {characters:,d} characters" in output
    (tmp_path / "no-docs").mkdir()
    assert main(["data", "fetch", "python-docs", "--data-dir", str(tmp_path / "no-docs")]) == 1
    assert "whitebox-hf data fetch python-docs" in capsys.readouterr().err


def test_real_corpus_when_cached():
    try:
        dataset = load_python_docs(fetch=False)
    except DataUnavailableError:
        pytest.skip("python-docs not cached (a data download, outside the install): "
                    "run `whitebox-hf data fetch python-docs`")
    train, validation = set(dataset["train"]["path"]), set(dataset["validation"]["path"])
    assert not train & validation
    assert len(train) + len(validation) > 400 and len(validation) >= 10
    assert "library/os.rst.txt" in train | validation
