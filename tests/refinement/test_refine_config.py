import pytest

from refinement import K_EFF_CHOICES, METHODS, RefineConfig, RefineConfigError


def test_defaults_follow_tanaka():
    c = RefineConfig()
    assert (c.method, c.lr, c.optimizer, c.delta, c.k_eff, c.k_eff_pairs) == ("latent", 0.01, "adam", 0.001, "estimate", 100)
    assert c.embedding == "classifier-alt"
    assert RefineConfig.from_dict(c.to_dict()) == c


def test_unknown_method_lists_valid_choices():
    with pytest.raises(RefineConfigError) as err:
        RefineConfig(method="latnet")
    assert "'latnet'" in str(err.value)
    for name in METHODS:
        assert name in str(err.value)


def test_unknown_k_eff_lists_valid_choices():
    with pytest.raises(RefineConfigError) as err:
        RefineConfig(k_eff="max")
    for name in K_EFF_CHOICES:
        assert name in str(err.value)


@pytest.mark.parametrize("field,value", [("optimizer", "rmsprop"), ("norm", "l1"), ("projection", "radial")])
def test_other_unknown_choices(field, value):
    with pytest.raises(RefineConfigError, match="valid choices"):
        RefineConfig(**{field: value})


def test_unknown_keys_are_errors():
    with pytest.raises(RefineConfigError, match="unknown refine config keys: k_ef; valid keys: method"):
        RefineConfig.from_dict({"k_ef": "one"})


@pytest.mark.parametrize("changes", [{"steps": -1}, {"steps": 2.0}, {"steps": True}, {"lr": 0.0}, {"lr": float("nan")},
                                     {"delta": -1e-3}, {"k_eff_pairs": 0}, {"k_eff_repeats": -2},
                                     {"ddls_step_size": 0}, {"ddls_noise_scale": -1.0}, {"clip_images": 1},
                                     {"embedding": ""}])
def test_bad_values(changes):
    with pytest.raises(RefineConfigError):
        RefineConfig(**changes)


def test_zero_steps_allowed_in_the_library_and_frozen():
    c = RefineConfig(steps=0)
    with pytest.raises(AttributeError):
        c.steps = 3  # type: ignore[misc]
    assert c.replace(steps=4).steps == 4


def test_method_kinds():
    assert not RefineConfig(method="target").moves_latent
    assert not RefineConfig(method="embedded-target").moves_latent
    assert RefineConfig(method="latent-image").moves_latent
    assert RefineConfig(method="embedded-latent").embedded and not RefineConfig(method="latent").embedded
