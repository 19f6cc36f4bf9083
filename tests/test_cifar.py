import pickle

import numpy as np
import pytest
import torch

from harness.core.errors import UserError
from harness.data.cifar import MEAN, generated_images
from harness.data.classification import load_classification
from tests.fixtures import write_cifar10_fixture


def test_fixture_is_read_by_torchvision_code(tmp_path):
    arrays = write_cifar10_fixture(tmp_path, n_train=12, n_test=5)
    data = load_classification("cifar10_fixture", tmp_path, download=False)
    assert data.train_x.shape == (12, 3, 32, 32) and data.train_x.dtype == torch.uint8
    np.testing.assert_array_equal(data.train_x.numpy(), arrays["train_x"])
    np.testing.assert_array_equal(data.test_x.numpy(), arrays["test_x"])
    np.testing.assert_array_equal(data.train_y.numpy(), arrays["train_y"])
    assert data.train_y.dtype == torch.int64 and data.mean == MEAN
    assert "md5 check off" in data.description


def test_fixture_files_have_the_real_layout(tmp_path):
    write_cifar10_fixture(tmp_path, n_train=12, n_test=5)
    folder = tmp_path / "cifar10-fixture" / "cifar-10-batches-py"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    with open(folder / "data_batch_1", "rb") as handle:
        entry = pickle.load(handle, encoding="latin1")
    assert entry["data"].dtype == np.uint8 and entry["data"].shape == (3, 3072)
    assert isinstance(entry["labels"], list)


def test_real_loader_still_checks_md5(tmp_path):
    # batches where the real loader looks: torchvision must reject them (md5), offline
    write_cifar10_fixture(tmp_path, folder=".")
    with pytest.raises(UserError) as err:
        load_classification("cifar10", tmp_path, download=False)
    message = str(err.value)
    assert "fails its md5 check" in message and "downloads are disabled" in message
    assert "\n" not in message


def test_missing_fixture_is_generated_once(tmp_path):
    first = load_classification("cifar10_fixture", tmp_path, download=False)
    assert first.train_x.shape == (50, 3, 32, 32) and first.test_x.shape == (20, 3, 32, 32)
    assert (tmp_path / "cifar10-fixture" / "cifar-10-batches-py" / "test_batch").is_file()
    again = load_classification("cifar10_fixture", tmp_path, download=False, train_limit=16)
    assert torch.equal(again.train_x, first.train_x[:16])


def test_generated_images_are_balanced_and_deterministic():
    x, y = generated_images(100, seed=1)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == [10] * 10
    x2, y2 = generated_images(100, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    # a class is told apart by its pattern: class means differ
    means = torch.stack([x[y == c].float().mean(0) for c in range(10)])
    assert torch.cdist(means.flatten(1), means.flatten(1)).fill_diagonal_(1e9).min() > 100
