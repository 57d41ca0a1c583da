import pytest
import torch

from gan_models import DATASETS, BatchSampler, DataNotFoundError, load_images, resolve_data_root, to_float


def test_mnist_is_loaded_whole_as_uint8(mnist_train, mnist_test):
    assert mnist_train.images.shape == (60000, 28, 28) and mnist_train.images.dtype == torch.uint8
    assert mnist_test.images.shape == (10000, 28, 28)
    assert mnist_train.labels[:5].tolist() == [5, 0, 4, 1, 9]  # the canonical first labels
    assert torch.bincount(mnist_test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_to_float_maps_0_255_to_minus1_1():
    u8 = torch.tensor([[[0, 255], [127, 128]]], dtype=torch.uint8)
    x = to_float(u8)
    assert x.shape == (1, 1, 2, 2)
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0
    assert torch.allclose(x[0, 0, 1], torch.tensor([127 / 127.5 - 1, 128 / 127.5 - 1]), atol=1e-6)


def test_sampler_visits_every_image_once_per_epoch():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1).expand(10, 28, 28).contiguous()
    s = BatchSampler(images, 5, seed=0)
    seen = torch.cat([s.next()[:, 0, 0, 0] for _ in range(2)])
    values = ((seen + 1) * 127.5).round().long().sort().values
    assert values.tolist() == list(range(10))


def test_sampler_state_round_trip_gives_the_same_batches(mnist_train):
    a = BatchSampler(mnist_train.images, 64, seed=3)
    for _ in range(5):
        a.next()
    state = a.state_dict()
    expected = [a.next() for _ in range(3)]
    b = BatchSampler(mnist_train.images, 64, seed=99)
    b.load_state_dict(state)
    for e in expected:
        assert torch.equal(b.next(), e)


def test_missing_folder_names_folder_files_and_how_to_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_images("mnist", data_root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "--data-root" in msg and "GAN_DATA_ROOT" in msg


def test_unknown_dataset_and_split_list_choices(data_root):
    with pytest.raises(ValueError, match=f"valid choices: {', '.join(DATASETS)}"):
        load_images("cifar10", data_root=data_root)
    with pytest.raises(ValueError, match="valid choices: train, test"):
        load_images("mnist", split="val", data_root=data_root)


def test_data_root_flag_wins_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GAN_DATA_ROOT", "/from/env")
    assert resolve_data_root(tmp_path) == tmp_path
    assert str(resolve_data_root(None)) == "/from/env"
