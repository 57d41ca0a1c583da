import dataclasses
import re

import pytest

from refinement import K_EFF_CHOICES, METHODS, RefineConfig, RefineConfigError
from refinement.config import METHOD_NAMES, RefineMethod, get_method


def test_defaults_follow_tanaka():
    c = RefineConfig()
    assert (c.method, c.lr, c.optimizer, c.delta, c.k_eff, c.k_eff_pairs) == (
        "latent", 0.01, "adam", 0.001, "estimate", 100)
    assert c.embedding == "classifier-alt"
    assert RefineConfig.from_dict(c.to_dict()) == c


def test_method_names_are_the_registry():
    assert METHOD_NAMES == tuple(METHODS)  # the Literal type of RefineConfig.method, in METHODS' order


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
    (field, value), = changes.items()
    # the message names the field and the value it refused
    with pytest.raises(RefineConfigError, match=rf"^{field} must be .*, got {re.escape(repr(value))}$"):
        RefineConfig(**changes)


def test_zero_steps_allowed_in_the_library_and_frozen():
    c = RefineConfig(steps=0)
    with pytest.raises(AttributeError, match="cannot assign to field 'steps'"):
        c.steps = 3  # type: ignore[misc]
    assert c.replace(steps=4).steps == 4


def test_declared_methods_follow_the_design():
    """What each method moves and where its transport cost lives (docs/refinement.md, Tanaka 2019)."""
    declared = {name: (m.kind, m.moves, m.cost_space) for name, m in METHODS.items()}
    assert declared == {
        "target": ("dot", "image", "image"),
        "latent": ("dot", "latent", "latent"),
        "latent-image": ("dot", "latent", "image"),
        "embedded-target": ("dot", "image", "embedding"),
        "embedded-latent": ("dot", "latent", "embedding"),
        "ddls": ("langevin", "latent", None),
    }
    assert all(name == m.name for name, m in METHODS.items())


@pytest.mark.parametrize("name", list(METHODS))
def test_config_reads_the_declaration(name):
    m = get_method(name)
    c = RefineConfig(method=name)
    assert c.variant is m and c.moves_latent == (m.moves == "latent") and c.embedded == (m.cost_space == "embedding")
    # the k_eff choices a method accepts are the declared ones (Langevin divides D by nothing: any is ignored)
    for k in K_EFF_CHOICES:
        if not m.dot or k in m.k_eff_choices:
            assert RefineConfig(method=name, k_eff=k).k_eff == k
        else:
            with pytest.raises(RefineConfigError, match=f"use one of {', '.join(m.k_eff_choices)}"):
                RefineConfig(method=name, k_eff=k)
    assert ("gradient" in m.k_eff_choices) == (m.dot and m.cost_space != "embedding")
    # the fields it reads are config fields; a DOT method reads projection iff it moves the latent,
    # clip_images iff it moves the image, embedding iff its cost is embedded
    assert set(m.reads) <= {f.name for f in dataclasses.fields(RefineConfig)} - {"method", "steps"}
    if m.dot:
        assert ("projection" in m.reads) == (m.moves == "latent") != ("clip_images" in m.reads)
        assert ("embedding" in m.reads) == (m.cost_space == "embedding")
        assert m.objective.startswith("H(z)" if m.moves == "latent" else "H(x)")
        assert ("E(" in m.anchor) == (m.cost_space == "embedding")


@pytest.mark.parametrize("method", list(METHODS))
def test_the_cli_refuses_exactly_the_flags_its_method_does_not_read(method):
    from refinement.run import _check_applicable, build_parser

    m = METHODS[method]
    config = RefineConfig(method=method, k_eff="mean-of-max" if m.dot else "estimate")  # reads both K_eff fields
    defaults = RefineConfig().to_dict()
    for name in sorted({f for other in METHODS.values() for f in other.reads}):
        args = build_parser().parse_args(["ckpt.pt", "--out", "out", "--method", method])
        setattr(args, name, defaults[name])  # the flag given, with a valid value
        if name in m.reads:
            _check_applicable(args, config)
        else:
            with pytest.raises(SystemExit, match=f"error: --{name.replace('_', '-')}.* does not apply to --method "
                                                 f"{method}; it is used by: "):
                _check_applicable(args, config)


def test_unknown_method_lookup_lists_valid_choices():
    with pytest.raises(RefineConfigError, match="unknown method 'latnet'; valid choices: target, latent, latent-image"):
        get_method("latnet")


@pytest.mark.parametrize("changes, message", [
    ({"kind": "annealing"}, "unknown kind of method 'm' 'annealing'; valid choices: dot, langevin"),
    ({"moves": "feature"}, "unknown moves of method 'm' 'feature'"),
    ({"cost_space": "pixel"}, "unknown cost space of method 'm' 'pixel'; valid choices: image, latent, embedding"),
    ({"cost_space": None}, "a DOT method has a cost space and an anchor"),
    ({"anchor": None}, "a DOT method has a cost space and an anchor"),
    ({"kind": "langevin"}, "a DOT method has a cost space and an anchor, a Langevin one neither"),
    ({"moves": "image"}, "a latent-space cost needs the latent to move"),
])
def test_a_declaration_is_checked_once_at_construction(changes, message):
    good = dict(name="m", kind="dot", moves="latent", cost_space="latent", objective="H(z)", anchor="z_y")
    RefineMethod(**good)
    with pytest.raises(RefineConfigError, match=message):
        RefineMethod(**{**good, **changes})
    with pytest.raises(dataclasses.FrozenInstanceError):
        METHODS["latent"].moves = "image"  # type: ignore[misc]
