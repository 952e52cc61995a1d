"""Method names (base loss + sampler + auxiliary losses) and the composite loss they build."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ConfigError, TrainSettings, resolve_options
from bench.methods import AUX_WEIGHTS, METHOD_DESCRIPTIONS, MethodSpec, create_method_loss, parse_method
from losses import AUX_LOSSES, ClassifierRef

SETTINGS = TrainSettings.from_options(resolve_options({"sim_weight": 0.5, "cb_beta": 0.5}))


@pytest.mark.parametrize(
    ("name", "base", "oversample", "aux"),
    [
        ("ce", "ce", False, ()),
        ("os", "ce", True, ()),
        ("cb", "cb", False, ()),
        ("fscl", "ce", False, ("fscl",)),
        ("fscl+os", "ce", True, ("fscl",)),
        ("cb+fscl", "cb", False, ("fscl",)),
        ("os+cb", "cb", True, ()),
    ],
)
def test_parse_method(name: str, base: str, oversample: bool, aux: tuple[str, ...]) -> None:
    assert parse_method(name) == MethodSpec(name=name, base=base, oversample=oversample, aux=aux)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("fscll", "unknown method component 'fscll' in 'fscll' (did you mean 'fscl'?)"),
        ("fscl-os", "unknown method component 'fscl-os' in 'fscl-os' (did you mean 'fscl+os'?)"),
        ("fscl os", "(did you mean 'fscl+os'?)"),
        ("cb+fscl-os", "unknown method component 'fscl-os' in 'cb+fscl-os' (did you mean 'cb+fscl+os'?)"),
        ("la , bcl", "(did you mean 'la+bcl'?)"),
        ("ce-cb", "in 'ce-cb'; valid"),  # ce+cb has two base losses: no method to suggest
        ("ce+cb", "two base losses"),
        ("os+os", "names 'os' twice"),
        ("", "unknown method component ''"),
    ],
)
def test_parse_method_errors(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_method(name)
    assert message in str(error.value)


def test_method_loss_is_base_plus_weighted_similarity_by_hand() -> None:
    # two samples, logits 0 -> CE = ln 2 each; features [1, 0] and [0, 1] with labels [0, 1]:
    # S = I, T = I -> similarity loss 0. Same labels [0, 0] instead: T = all ones, S = I -> MSE = 2/4 = 0.5.
    logits = torch.zeros(2, 2, requires_grad=True)
    features = [torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    loss_fn = create_method_loss(parse_method("fscl+os"), [10, 10], SETTINGS)
    total, terms = loss_fn(logits, features, torch.tensor([0, 0]))
    assert terms["ce"].item() == pytest.approx(math.log(2))
    assert terms["fscl"].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(math.log(2) + 0.5 * 0.5)
    total.backward()
    assert logits.grad is not None


def test_class_balanced_base_uses_counts() -> None:
    # counts [1, 2] with beta 0.5: effective numbers 1 and 1.5 -> weights 1 and 2/3, normalised to sum 2: 1.2, 0.8.
    loss_fn = create_method_loss(parse_method("cb"), [1, 2], SETTINGS)
    logits = torch.zeros(2, 2)
    total, terms = loss_fn(logits, [], torch.tensor([0, 1]))
    assert set(terms) == {"cb"}
    assert total.item() == pytest.approx((1.2 + 0.8) / 2 * math.log(2))


def test_each_auxiliary_loss_has_its_own_weight_by_hand() -> None:
    """Four samples on two axes, labels [0, 0, 1, 1]; supcon's projection head set to pass the features through.
    CE of zero logits: ln 2. fscl: S - T has eight entries of +-1 in 16 -> 0.5. triplet (margin 0.2): each
    anchor's positive lies sqrt(2) away, a negative on top of it (distance sqrt(1e-12)) -> sqrt(2) + 0.2 - 1e-6.
    supcon (t 0.1): each anchor's positive at cosine 0, one negative at 1, one at 0 -> log(2 + e^10)."""
    weights = {"sim_weight": 0.1, "supcon_weight": 2.0, "triplet_weight": 5.0, "bcl_weight": 0.7}
    settings = TrainSettings.from_options(resolve_options(weights))
    features = [torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])]
    labels = torch.tensor([0, 0, 1, 1])
    classifier = ClassifierRef(2, lambda: torch.eye(2))
    loss_fn = create_method_loss(
        parse_method("fscl+supcon+triplet+bcl"), [10, 10], settings, feature_dims=[2], classifier=classifier
    )
    projection = loss_fn.aux["supcon"].projection
    with torch.no_grad():
        projection[0].weight.copy_(torch.eye(2))
        projection[0].bias.zero_()
        projection[2].weight.zero_()
        projection[2].weight[:2].copy_(torch.eye(2))
        projection[2].bias.zero_()
    total, terms = loss_fn(torch.zeros(4, 2), features, labels)
    assert terms["ce"].item() == pytest.approx(math.log(2))
    assert terms["fscl"].item() == pytest.approx(0.5)
    assert terms["triplet"].item() == pytest.approx(math.sqrt(2) + 0.2 - 1e-6, abs=1e-6)
    assert terms["supcon"].item() == pytest.approx(math.log(2 + math.exp(10)), rel=1e-6)
    expected = (
        math.log(2)
        + 0.1 * 0.5
        + 2.0 * math.log(2 + math.exp(10))
        + 5.0 * (math.sqrt(2) + 0.2 - 1e-6)
        + 0.7 * terms["bcl"].item()
    )
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert terms["bcl"].item() > 0


def test_default_auxiliary_weights_are_the_papers() -> None:
    """fscl 0.1 (the KCC authors' alpha), supcon 1, bcl 0.3 (Zhu et al.'s 0.6 / 2.0), triplet 1 (Luo et al.)."""
    assert set(AUX_WEIGHTS) == set(AUX_LOSSES)
    defaults = TrainSettings.from_options(resolve_options({}))
    loss_fn = create_method_loss(
        parse_method("fscl+supcon+bcl+triplet"),
        [3, 1],
        defaults,
        feature_dims=[4],
        classifier=ClassifierRef(4, lambda: torch.ones(2, 4)),
    )
    assert loss_fn.aux_weights == {"fscl": 0.1, "supcon": 1.0, "bcl": 0.3, "triplet": 1.0}
    for name in AUX_LOSSES:
        assert f"--{AUX_WEIGHTS[name].replace('_', '-')}" in METHOD_DESCRIPTIONS[name]
