import numpy as np
import pytest
import torch

from harness.core.errors import UserError
from harness.data.classification import load_classification
from tests.fixtures import write_mnist_raw


def test_torchvision_mnist_reads_idx_fixture(tmp_path):
    arrays = write_mnist_raw(tmp_path, n_train=60, n_test=20)
    data = load_classification("mnist", tmp_path, download=False)
    assert data.train_x.shape == (60, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(data.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.train_y.dtype == torch.int64


def test_limits_trim_both_splits(tmp_path):
    write_mnist_raw(tmp_path)
    data = load_classification("mnist", tmp_path, download=False, train_limit=10, test_limit=5)
    assert len(data.train_x) == len(data.train_y) == 10 and len(data.test_x) == 5


def test_missing_mnist_offline_is_one_clear_line(tmp_path):
    with pytest.raises(UserError) as err:
        load_classification("mnist", tmp_path / "empty", download=False)
    message = str(err.value)
    assert "MNIST/raw" in message and "--profile demo" in message and "\n" not in message


def test_mnist5k_fixed_split():
    data = load_classification("mnist5k", "unused")
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [400] * 10
    assert torch.bincount(data.test_y).tolist() == [100] * 10
    assert data.train_x.dtype == torch.uint8 and int(data.train_x.max()) == 255
    train_rows = {bytes(x.numpy()) for x in data.train_x}
    assert not any(bytes(x.numpy()) in train_rows for x in data.test_x)
    again = load_classification("mnist5k", "unused")
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)


def test_mnist5k_prefix_covers_every_digit():
    data = load_classification("mnist5k", "unused", train_limit=300, test_limit=100)
    assert len(torch.unique(data.train_y)) == 10 and len(torch.unique(data.test_y)) == 10


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset"):
        load_classification("imagenet-22k", "x")
