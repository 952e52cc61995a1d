"""Method names (base loss + sampler + auxiliary losses) and the composite loss they build."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ConfigError, TrainSettings, resolve_options
from bench.methods import MethodSpec, create_method_loss, parse_method

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
