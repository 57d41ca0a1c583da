"""Bad input: configs and checkpoint files."""

import pytest
import torch

from gan_models import CheckpointError, ConfigError, TrainConfig, Trainer, load_checkpoint, load_models, save_checkpoint
from gan_models.checkpoint import OutputDirError, check_writable_dir
from gan_models.trainer import check_device


def test_defaults_follow_the_loss():
    assert TrainConfig(loss="wgan-gp").lambda_gp == 10.0
    assert TrainConfig(loss="wgan").clip_value == 0.01
    assert TrainConfig(loss="san").san_base == "hinge"
    assert TrainConfig(loss="bce").lambda_gp is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "lsgan"}, "unknown loss 'lsgan'; valid choices: bce, wgan, wgan-gp, hinge, san"),
        ({"loss": "bce", "lambda_gp": 10.0}, "lambda_gp is only used by loss 'wgan-gp', got loss 'bce'"),
        ({"loss": "wgan-gp", "clip_value": 0.01}, "clip_value is only used by loss 'wgan', got loss 'wgan-gp'"),
        ({"loss": "hinge", "san_base": "bce"}, "san_base is only used by loss 'san'"),
        ({"loss": "san", "san_base": "wgan"}, "unknown san_base 'wgan'; valid choices: hinge, bce"),
        ({"architecture": "resnet"}, "valid choices: mlp, dcgan"),
        ({"latent_prior": "cauchy"}, "valid choices: normal, uniform"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"n_critic": 1.5}, "n_critic must be a positive integer"),
        ({"lr_d": float("nan")}, "lr_d must be a positive number"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"loss": "wgan-gp", "lambda_gp": -1.0}, "lambda_gp must be a positive number"),
    ],
)
def test_bad_values_are_rejected_with_a_precise_message(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_unknown_keys_are_errors_listing_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config keys: lamda_gp; valid keys: dataset, "):
        TrainConfig.from_dict({"loss": "wgan-gp", "lamda_gp": 5.0})


def test_round_trip_through_dict():
    cfg = TrainConfig(loss="wgan-gp", lambda_gp=5.0, n_critic=5, architecture="dcgan")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pt"):
        load_models(tmp_path / "nope.pt")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04 this is not a torch file" * 10)
    with pytest.raises(CheckpointError, match="is corrupt or unreadable") as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)


def test_truncated_checkpoint(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"config": TrainConfig().to_dict(), "step": 0})
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(cut)


def test_foreign_torch_file_is_rejected(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a gan-refine-search checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_checkpoint_refuses_arbitrary_pickles(tmp_path):
    import pathlib  # any class outside torch's weights-only allow-list stands in for a malicious pickle

    evil = {"format": "gan-refine-search/checkpoint/v1", "config": pathlib.PurePosixPath("x")}
    torch.save(evil, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / "evil.pt")


def test_checkpoint_without_generator_loads_as_none(tmp_path):
    from gan_models import NetworkConfig, build_discriminator

    D = build_discriminator(NetworkConfig())
    save_checkpoint(tmp_path / "d.pt", {"config": TrainConfig().to_dict(), "step": 3, "discriminator": D.state_dict()})
    loaded = load_models(tmp_path / "d.pt")
    assert loaded.generator is None and loaded.discriminator is not None and loaded.step == 3


@pytest.mark.parametrize("content", [b"hello, I am a text file\n", bytes(range(256)) * 8, b""])
def test_text_or_random_bytes_are_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="is corrupt or unreadable: not a torch archive") as err:
        load_models(path)
    assert "\n" not in str(err.value)


def test_check_writable_dir_probes_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_writable_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert check_writable_dir(tmp_path) == tmp_path
    for bad, message in ((tmp_path / "file", "exists and is not a folder"),
                         (tmp_path / "file" / "sub", "cannot be created: .*file is a file, not a folder"),
                         ("/proc/gan-refine-search-test", "is not writable: cannot create files in /proc")):
        with pytest.raises(OutputDirError, match=message):
            check_writable_dir(bad, what="--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_device_is_checked_before_any_work(mnist_train):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    with pytest.raises(ValueError, match="device 'cuda' requested but CUDA is not available; valid choices here: cpu"):
        Trainer(TrainConfig(batch_size=8), mnist_train.images[:16], device="cuda")
    with pytest.raises(ValueError, match="invalid device 'gpu'; valid examples: cpu, cuda, cuda:0"):
        check_device("gpu")
