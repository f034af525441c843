import gzip

import numpy as np
import pytest

from whitebox_hf.data import (
    FASHION_MNIST_CLASSES,
    AugmentedTensorDataset,
    DataUnavailableError,
    EpochPermutationSampler,
    dataset_to_tensors,
    image_classification_transforms,
    load_fashion_mnist,
    load_sklearn_digits,
    read_idx_images,
)
from whitebox_hf.data.fashion_mnist import FASHION_MNIST_FILES


def write_idx(folder, split, images, labels):
    image_name, label_name = FASHION_MNIST_FILES[split]
    header = b"".join(int(v).to_bytes(4, "big") for v in (2051, len(images), 28, 28))
    with gzip.open(folder / image_name, "wb") as handle:
        handle.write(header + images.tobytes())
    with gzip.open(folder / label_name, "wb") as handle:
        handle.write(b"".join(int(v).to_bytes(4, "big") for v in (2049, len(labels))) + labels.tobytes())


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "raw"
    folder.mkdir()
    arrays = {}
    for split, count in (("train", 12), ("test", 5)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        write_idx(folder, split, images, labels)
        arrays[split] = (images, labels)
    return folder, arrays


def test_loads_original_idx_files_as_a_datasetdict(idx_folder):
    folder, arrays = idx_folder
    dataset = load_fashion_mnist(data_dir=folder)
    assert {split: len(part) for split, part in dataset.items()} == {"train": 12, "test": 5}
    assert dataset["train"].features["label"].names == FASHION_MNIST_CLASSES
    assert type(dataset["train"].features["image"]).__name__ == "Image"
    images, labels = dataset_to_tensors(dataset["test"])
    assert images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(images[:, 0].numpy(), arrays["test"][0])
    np.testing.assert_array_equal(labels.numpy(), arrays["test"][1])


def test_cache_is_written_once_then_reused(idx_folder, tmp_path):
    folder, arrays = idx_folder
    cache = tmp_path / "cache"
    (cache / "fashion-mnist").mkdir(parents=True)
    (cache / "fashion-mnist" / "raw").symlink_to(folder, target_is_directory=True)
    first = load_fashion_mnist(cache_dir=cache, fetch=False)
    assert (cache / "fashion-mnist" / "datasetdict" / "dataset_dict.json").is_file()
    for name in folder.iterdir():  # the prepared copy no longer needs the raw files
        name.unlink()
    second = load_fashion_mnist(cache_dir=cache, fetch=False)
    assert second["train"]["label"] == first["train"]["label"]


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DataUnavailableError, match="whitebox-hf data fetch fashion-mnist"):
        load_fashion_mnist(data_dir=tmp_path)
    with pytest.raises(DataUnavailableError, match="apt-get"):
        load_fashion_mnist(cache_dir=tmp_path, fetch=False)


def test_bad_idx_file_is_rejected(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write((1234).to_bytes(4, "big") + bytes(12))
    with pytest.raises(ValueError, match="IDX3"):
        read_idx_images(path)


def test_real_fashion_mnist_when_available():
    """The real data, through the same path `make demo` uses (skipped where no registry can be reached)."""
    try:
        dataset = load_fashion_mnist()
    except DataUnavailableError as error:
        pytest.skip("Fashion-MNIST is a data download, outside the install, and cannot be fetched here: "
                    + str(error).splitlines()[0])
    assert {split: len(part) for split, part in dataset.items()} == {"train": 60_000, "test": 10_000}
    labels = np.asarray(dataset["test"]["label"])
    assert np.bincount(labels).tolist() == [1000] * 10  # Fashion-MNIST's test split is balanced


def test_digits_fallback():
    dataset = load_sklearn_digits()
    assert len(dataset["train"]) + len(dataset["test"]) == 1797
    images, _ = dataset_to_tensors(dataset["train"])
    assert images.shape[1:] == (1, 16, 16)


def test_augmentation_depends_only_on_seed_epoch_and_index():
    import torch

    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(6)
    transform = image_classification_transforms(28, [0.5], [0.5], train=True, crop_padding=4)
    a, b = (AugmentedTensorDataset(images, labels, transform, seed=1) for _ in range(2))
    torch.rand(100)  # global RNG use must not matter
    assert (a[3]["pixel_values"] == b[3]["pixel_values"]).all()
    b.set_epoch(1)
    assert any((a[i]["pixel_values"] != b[i]["pixel_values"]).any() for i in range(6))
    sampler = EpochPermutationSampler(10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_each_image_is_augmented_from_its_own_seed_and_the_global_rng_is_untouched():
    """Item i of epoch e is the transform run right after ``torch.manual_seed(f(seed, e, i))``: the images every
    earlier run and checkpoint saw. Seeding only the CPU generator (fast) must keep exactly that stream."""
    import torch

    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = image_classification_transforms(28, [0.5], [0.5], train=True, random_erasing=0.5)
    dataset = AugmentedTensorDataset(images, torch.arange(5), transform, seed=3)
    dataset.set_epoch(2)
    state = torch.get_rng_state()
    items = [dataset[i]["pixel_values"] for i in range(5)]
    assert torch.equal(torch.get_rng_state(), state)
    for index, item in enumerate(items):
        torch.manual_seed((3 * 1_000_003 + 2) * 10_000_019 + index)
        assert torch.equal(item, transform(images[index])), index
    torch.set_rng_state(state)


def test_random_erasing_zeroes_a_rectangle_reproducibly_and_checks_its_probability():
    import torch

    images = torch.full((4, 1, 28, 28), 200, dtype=torch.uint8)
    transform = image_classification_transforms(28, [0.5], [0.5], train=True, crop_padding=0,
                                                horizontal_flip=False, random_erasing=1.0)
    a, b = (AugmentedTensorDataset(images, torch.arange(4), transform, seed=2) for _ in range(2))
    erased = a[1]["pixel_values"]
    assert (erased == 0).any() and (erased != 0).any()  # a rectangle of zeros inside the normalised image
    assert torch.equal(erased, b[1]["pixel_values"])
    kept = image_classification_transforms(28, [0.5], [0.5], train=False, random_erasing=1.0)(images[0])
    assert not (kept == 0).any()  # evaluation never erases
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="random_erasing"):
            image_classification_transforms(28, [0.5], [0.5], train=True, random_erasing=bad)


def test_dataset_checks_shapes():
    import torch

    with pytest.raises(ValueError, match="images"):
        AugmentedTensorDataset(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(2), None)
    with pytest.raises(ValueError, match="labels"):
        AugmentedTensorDataset(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.zeros(3), None)
