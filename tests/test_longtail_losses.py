"""Long-tail methods: focal, LDAM-DRW, logit adjustment, balanced softmax, supcon and triplet against hand values;
deferred re-sampling (drs); every method end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from bench import cli
from bench.config import ConfigError, TrainSettings, resolve_options
from bench.data import create_loader, set_loader_epoch
from bench.methods import METHOD_DESCRIPTIONS, MethodSpec, components, create_method_loss, parse_method
from losses import (
    AUX_LOSSES,
    BASE_LOSSES,
    BalancedSoftmaxLoss,
    ClassifierRef,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SupConLoss,
    TripletLoss,
    balanced_contrastive_loss,
    create_aux_loss,
    create_base_loss,
    default_drw_epoch,
    ldam_margins,
)

LN2, LN3, LN4, LN4_3 = math.log(2.0), math.log(3.0), math.log(4.0), math.log(4.0 / 3.0)
R = 1 / math.sqrt(2)  # cos 45 degrees

# Three samples, two classes: softmax([0, 0]) = [1/2, 1/2], softmax([ln 3, 0]) = [3/4, 1/4].
LOGITS = torch.tensor([[0.0, 0.0], [LN3, 0.0], [LN3, 0.0]])
LABELS = torch.tensor([0, 0, 1])  # p_t = 1/2, 3/4, 1/4


def settings(**options: object) -> TrainSettings:
    return TrainSettings.from_options(resolve_options(options))


# --- focal -----------------------------------------------------------------------------------------------------------


def test_focal_gamma_zero_is_cross_entropy() -> None:
    expected = (LN2 + LN4_3 + LN4) / 3  # -log p_t = ln 2, ln 4/3, ln 4
    assert FocalLoss(gamma=0.0)(LOGITS, LABELS).item() == pytest.approx(expected, abs=1e-6)
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)) * 3
    labels = torch.tensor([0, 1, 2, 3, 3, 0])
    assert FocalLoss(gamma=0.0)(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())


def test_focal_gamma_two_hand_value() -> None:
    # (1 - p_t)^2 = 1/4, 1/16, 9/16
    expected = (LN2 / 4 + LN4_3 / 16 + 9 / 16 * LN4) / 3
    got = FocalLoss(gamma=2.0)(LOGITS.to(torch.bfloat16), LABELS)
    assert got.dtype == torch.float32
    assert FocalLoss(gamma=2.0)(LOGITS, LABELS).item() == pytest.approx(expected, abs=1e-6)


def test_focal_three_classes_and_finite_grads_when_certain() -> None:
    # softmax([ln 2, 0, 0]) = [1/2, 1/4, 1/4]; label 1: p_t = 1/4, (3/4)^1 * ln 4
    got = FocalLoss(gamma=1.0)(torch.tensor([[LN2, 0.0, 0.0]]), torch.tensor([1]))
    assert got.item() == pytest.approx(0.75 * LN4, abs=1e-6)
    logits = torch.tensor([[300.0, -300.0, 0.0]], requires_grad=True)
    FocalLoss(gamma=0.5)(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()


# --- LDAM with deferred re-weighting ---------------------------------------------------------------------------------


def test_ldam_margins_follow_quarter_power_of_counts() -> None:
    margins = ldam_margins([100, 1], max_margin=0.5)
    assert margins.tolist() == pytest.approx([0.5 / 100**0.25, 0.5], abs=1e-7)
    assert (margins[1] / margins[0]).item() == pytest.approx(100**0.25, rel=1e-6)  # sqrt(10)
    # counts [16, 81, 1]: n^-1/4 = [1/2, 1/3, 1] -> scaled so the largest is 0.3
    assert ldam_margins([16, 81, 1], max_margin=0.3).tolist() == pytest.approx([0.15, 0.1, 0.3], abs=1e-7)


# counts [100, 1], s = 2, zero logits: sample 0 (class 0) -> s * [-m0, 0], sample 1 (class 1) -> s * [0, -m1]
M0, M1 = 0.5 / math.sqrt(10), 0.5
L0 = math.log(1 + math.exp(2 * M0))  # -log(e^{-2 m0} / (e^{-2 m0} + 1))
L1 = math.log(1 + math.exp(2 * M1))
E0 = (1 - 0.9999**100) / (1 - 0.9999)  # effective numbers: E0 for 100 images, E1 = 1 for one
W0, W1 = 2 * (1 / E0) / (1 / E0 + 1), 2 * 1 / (1 / E0 + 1)  # class-balanced weights, summing to 2


def test_ldam_loss_hand_value_before_and_after_drw() -> None:
    loss = LDAMLoss([100, 1], max_margin=0.5, scale=2.0, drw_epoch=3)
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    loss.set_epoch(2)
    assert loss.class_weights().tolist() == [1.0, 1.0]
    assert loss(logits, labels).item() == pytest.approx((L0 + L1) / 2, abs=1e-6)
    loss.set_epoch(3)
    assert loss.class_weights().tolist() == pytest.approx([W0, W1], rel=1e-5)
    # as in the authors' code: F.cross_entropy(weight=w) divides by the sum of the batch's weights
    assert loss(logits, labels).item() == pytest.approx((W0 * L0 + W1 * L1) / (W0 + W1), abs=1e-6)


def test_ldam_without_drw_epoch_never_reweights_and_bad_args() -> None:
    loss = LDAMLoss([100, 1], drw_epoch=None)
    loss.set_epoch(10_000)
    assert loss.class_weights().tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="scale"):
        LDAMLoss([3, 1], scale=0.0)
    with pytest.raises(ValueError, match="drw_epoch"):
        LDAMLoss([3, 1], drw_epoch=0)


@pytest.mark.parametrize(
    ("epochs", "drw"), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 5), (10, 9), (100, 81), (199, 160), (200, 161)]
)
def test_default_drw_epoch_follows_the_first_80_percent(epochs: int, drw: int) -> None:
    """Cao et al. re-weight from the 0-based epoch 160 of 200, the 161st: floor(0.8 E) + 1, never past E."""
    assert default_drw_epoch(epochs) == drw
    assert 1 <= default_drw_epoch(epochs) <= epochs


def test_ldam_logit_scale_is_its_scale() -> None:
    assert LDAMLoss([3, 1], scale=7.5).logit_scale == 7.5
    assert create_method_loss(parse_method("ldam+os"), [3, 1], settings(ldam_scale=12.0)).logit_scale == 12.0
    assert create_method_loss(parse_method("la"), [3, 1], settings()).logit_scale == 1.0


def test_method_loss_set_epoch_switches_ldam_at_the_default_drw_epoch() -> None:
    loss_fn = create_method_loss(parse_method("ldam"), [100, 1], settings(epochs=10, ldam_scale=2.0))
    assert loss_fn.base.drw_epoch == 9  # after the first 80% of 10 epochs
    logits, labels = torch.zeros(2, 2), torch.tensor([0, 1])
    loss_fn.set_epoch(8)
    assert loss_fn(logits, [], labels)[0].item() == pytest.approx((L0 + L1) / 2, abs=1e-6)
    loss_fn.set_epoch(9)
    assert loss_fn(logits, [], labels)[0].item() == pytest.approx((W0 * L0 + W1 * L1) / (W0 + W1), abs=1e-6)
    explicit = create_method_loss(parse_method("ldam"), [100, 1], settings(epochs=5, drw_epoch=2))
    assert explicit.base.drw_epoch == 2


# --- logit adjustment and balanced softmax ---------------------------------------------------------------------------


def test_logit_adjusted_logits_and_loss() -> None:
    # counts [3, 1] -> prior [3/4, 1/4]; tau = 1 adds [ln 3/4, ln 1/4]
    loss = LogitAdjustedLoss([3, 1], tau=1.0)
    assert loss.adjusted_logits(torch.zeros(1, 2)).tolist()[0] == pytest.approx([math.log(0.75), math.log(0.25)])
    # zero logits: p = prior -> label 0: ln 4/3, label 1: ln 4
    assert loss(torch.zeros(2, 2), torch.tensor([0, 1])).item() == pytest.approx((LN4_3 + LN4) / 2, abs=1e-6)
    # tau = 2: softmax of 2 ln prior is proportional to [9/16, 1/16] -> [9/10, 1/10]; label 1: ln 10
    tau2 = LogitAdjustedLoss([3, 1], tau=2.0)
    assert tau2(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(10), abs=1e-6)
    # tau = 0 is cross-entropy
    assert LogitAdjustedLoss([3, 1], tau=0.0)(LOGITS, LABELS).item() == pytest.approx((LN2 + LN4_3 + LN4) / 3)


def test_logit_adjusted_three_classes() -> None:
    # counts [6, 3, 1]: prior [0.6, 0.3, 0.1]; zero logits, label 2 -> ln 10; logits [0, 0, ln 6] -> p2 = 0.6/1.5
    loss = LogitAdjustedLoss([6, 3, 1])
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.log(6.0)]])
    expected = (math.log(10.0) - math.log(0.6 / 1.5)) / 2
    assert loss(logits, torch.tensor([2, 2])).item() == pytest.approx(expected, abs=1e-6)


def test_balanced_softmax_hand_value_equals_logit_adjustment_tau_one() -> None:
    # counts [3, 1] add [ln 3, 0]: logits [0, 0] label 1 -> p1 = 1/4 -> ln 4; logits [0, ln 3] -> [ln 3, ln 3] -> ln 2
    loss = BalancedSoftmaxLoss([3, 1])
    assert loss.adjustment.tolist() == pytest.approx([LN3, 0.0])
    logits = torch.tensor([[0.0, 0.0], [0.0, LN3]])
    assert loss(logits, torch.tensor([1, 1])).item() == pytest.approx((LN4 + LN2) / 2, abs=1e-6)
    random = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 2, 1])
    bsce = BalancedSoftmaxLoss([50, 7, 2])(random, labels).item()
    assert bsce == pytest.approx(LogitAdjustedLoss([50, 7, 2], tau=1.0)(random, labels).item(), abs=1e-6)


# --- supervised contrastive ------------------------------------------------------------------------------------------


def _identity_supcon(temperature: float) -> SupConLoss:
    loss = SupConLoss(2, temperature=temperature)
    loss.projection = nn.Identity()  # test hook: the loss then sees the (normalised) features themselves
    return loss


@pytest.mark.parametrize("t", [1.0, 0.5])
def test_supcon_hand_value(t: float) -> None:
    # unit vectors a = [1, 0], b = [0, 1], c = [1, 1]/sqrt 2 (class 0) and d = [-1, 0] (class 1, no positive)
    # a: sims to b, c, d = 0, r, -1; positives b, c -> log(1 + e^{r/t} + e^{-1/t}) - (0 + r/t) / 2
    # b: sims 0, r, 0 -> log(2 + e^{r/t}) - (0 + r/t) / 2
    # c: sims r, r, -r -> log(2 e^{r/t} + e^{-r/t}) - r/t;  d is left out
    la = math.log(1 + math.exp(R / t) + math.exp(-1 / t)) - R / t / 2
    lb = math.log(2 + math.exp(R / t)) - R / t / 2
    lc = math.log(2 * math.exp(R / t) + math.exp(-R / t)) - R / t
    features = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-0.5, 0.0]])  # normalised by the loss
    got = _identity_supcon(t)([features], torch.tensor([0, 0, 0, 1]))
    assert got.item() == pytest.approx((la + lb + lc) / 3, abs=1e-5)


def test_supcon_without_positives_is_zero_with_grad_and_projection_trains() -> None:
    features = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), requires_grad=True)
    loss = SupConLoss(4)
    zero = loss([features], torch.tensor([0, 1, 2]))
    assert zero.item() == 0.0 and zero.grad_fn is not None
    zero.backward()
    assert torch.isfinite(features.grad).all()
    single = loss([features[:1]], torch.tensor([0]))
    assert single.item() == 0.0 and single.grad_fn is not None
    value = loss([torch.randn(2, 9), features], torch.tensor([0, 1, 1]))  # the last tapped stage is used
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loss.parameters())
    assert loss.projection[-1].weight.grad.abs().sum() > 0


# --- triplet ---------------------------------------------------------------------------------------------------------


def test_triplet_batch_hard_hand_value() -> None:
    # a = [1, 0], b = [0, 1] (class 0); c = [-1, 0], d = [1, 1]/sqrt 2 (class 1); ||x - y|| = sqrt(2 - 2 cos)
    # a: d+ = |ab| = sqrt 2, negatives c (2) and d (sqrt(2 - sqrt 2)) -> hardest d
    # b: d+ = sqrt 2, negatives c (sqrt 2) and d (sqrt(2 - sqrt 2)) -> hardest d
    # c: d+ = |cd| = sqrt(2 + sqrt 2), negatives a (2), b (sqrt 2) -> hardest b
    # d: d+ = sqrt(2 + sqrt 2), negatives a, b (both sqrt(2 - sqrt 2))
    near, far, s2 = math.sqrt(2 - math.sqrt(2)), math.sqrt(2 + math.sqrt(2)), math.sqrt(2)
    expected = ((s2 - near + 0.2) * 2 + (far - s2 + 0.2) + (far - near + 0.2)) / 4
    features = torch.tensor([[3.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    assert TripletLoss(margin=0.2)([features], torch.tensor([0, 0, 1, 1])).item() == pytest.approx(expected, abs=1e-5)


def test_triplet_hardest_positive_and_anchor_without_positive() -> None:
    # a = [1, 0], b = [0, 1], c = [1, 1]/sqrt 2 (class 0), d = [-1, 0] (class 1: no positive, left out)
    # a: d+ = max(|ab| = sqrt 2, |ac| = sqrt(2 - sqrt 2)) = sqrt 2, d- = |ad| = 2 -> max(sqrt 2 - 2 + 0.2, 0) = 0
    # b: d+ = sqrt 2, d- = |bd| = sqrt 2 -> 0.2;  c: d+ = sqrt(2 - sqrt 2), d- = sqrt(2 + sqrt 2) -> 0
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    assert TripletLoss(margin=0.2)([features], torch.tensor([0, 0, 0, 1])).item() == pytest.approx(0.2 / 3, abs=1e-6)


def test_triplet_one_class_batch_is_zero_with_grad() -> None:
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], requires_grad=True)  # identical points too
    zero = TripletLoss()([features], torch.tensor([1, 1, 1]))
    assert zero.item() == 0.0 and zero.grad_fn is not None
    zero.backward()
    assert torch.isfinite(features.grad).all()
    value = TripletLoss(margin=1.0)([features], torch.tensor([0, 0, 1]))  # identical positives: finite grads
    features.grad = None
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(features.grad).all()


# --- every method: registry, options, one pass with backward ---------------------------------------------------------


def test_registry_lists_the_long_tail_losses_and_descriptions() -> None:
    assert {"focal", "ldam", "la", "bsce"} <= set(BASE_LOSSES)
    assert {"supcon", "triplet"} <= set(AUX_LOSSES)
    assert all(METHOD_DESCRIPTIONS.get(name) for name in components())
    loss = create_base_loss("ldam", [9, 1], ldam_max_margin=0.4, ldam_scale=10.0, drw_epoch=5)
    assert isinstance(loss, LDAMLoss) and loss.scale == 10.0 and loss.drw_epoch == 5
    assert loss.margins.max().item() == pytest.approx(0.4)
    assert create_base_loss("focal", [9, 1], focal_gamma=1.5).gamma == 1.5
    assert create_aux_loss("triplet", triplet_margin=0.7).margin == 0.7
    assert create_aux_loss("supcon", (16, 32), supcon_temperature=0.2).temperature == 0.2
    with pytest.raises(ValueError, match="feature_dims"):
        create_aux_loss("supcon")


def test_parse_long_tail_methods() -> None:
    assert parse_method("ldam+supcon+os") == MethodSpec("ldam+supcon+os", "ldam", True, ("supcon",))
    assert parse_method("triplet") == MethodSpec("triplet", "ce", False, ("triplet",))
    assert parse_method("ldam+drs") == MethodSpec("ldam+drs", "ldam", True, (), deferred_sampling=True)
    with pytest.raises(ConfigError, match="two base losses"):
        parse_method("focal+la")
    with pytest.raises(ConfigError, match="two samplers"):
        parse_method("os+drs")


def _labels_seen(loader: torch.utils.data.DataLoader) -> list[int]:
    return [int(label) for _, labels in loader for label in labels]


def test_drs_shuffles_like_ce_before_the_drw_epoch_then_oversamples() -> None:
    images, labels = np.zeros((100, 2, 2, 3), dtype=np.uint8), np.array([0] * 90 + [1] * 10)

    def transform(image: np.ndarray) -> dict[str, torch.Tensor]:
        return {"image": torch.zeros(1)}

    plain = create_loader(images, labels, transform, batch_size=10, train=True, seed=4)
    drs = create_loader(
        images, labels, transform, batch_size=10, train=True, seed=4, oversample=True, oversample_from=2
    )
    set_loader_epoch(drs, 1)
    first = _labels_seen(drs)
    assert first == _labels_seen(plain) and sum(first) == 10  # epoch 1: the same shuffle as ce
    set_loader_epoch(drs, 2)
    second = _labels_seen(drs)
    assert len(second) == 100 and 35 <= sum(second) <= 65  # from the drw epoch: classes 1:1 on average
    create_method_loss(parse_method("drs"), [90, 10], settings()).set_epoch(3)  # a sampler adds no loss term


def test_long_tail_options_defaults_and_errors() -> None:
    defaults = settings()
    assert (defaults.focal_gamma, defaults.ldam_max_margin, defaults.ldam_scale, defaults.drw_epoch) == (
        2,
        0.5,
        30,
        None,
    )
    assert (defaults.la_tau, defaults.supcon_temperature, defaults.triplet_margin) == (1.0, 0.1, 0.2)
    for options, message in [
        ({"ldam_scale": 0}, "--ldam-scale must lie in (0, inf)"),
        ({"drw_epoch": 0}, "--drw-epoch must be an integer >= 1"),
        ({"supcon_temperature": 0}, "--supcon-temperature must lie in (0, inf)"),
        ({"focal_gamma": -1}, "--focal-gamma must lie in [0, inf)"),
        ({"triplet_margin": "x"}, "--triplet-margin must be a number"),
    ]:
        with pytest.raises(ConfigError) as error:
            resolve_options(options)
        assert message in str(error.value)


def _method_names() -> list[str]:
    bases, auxes = list(BASE_LOSSES), list(AUX_LOSSES)
    return [
        *bases,
        *auxes,
        *(f"{b}+{a}" for b in bases for a in auxes),
        "ldam+supcon+triplet+os",
        "os",
        "drs",
        "ldam+drs",
    ]


@pytest.mark.parametrize("name", _method_names())
def test_every_method_runs_forward_and_backward(name: str) -> None:
    gen = torch.Generator().manual_seed(3)
    classifier_weight = torch.randn(3, 4, generator=gen, requires_grad=True)  # [C, D_cls], the model's
    loss_fn = create_method_loss(
        parse_method(name), [20, 5, 1], settings(epochs=2), feature_dims=(6, 8),
        classifier=ClassifierRef(4, lambda: classifier_weight),
    )  # fmt: skip
    logits = torch.randn(5, 3, generator=gen, requires_grad=True)
    features = [torch.randn(5, 6, generator=gen, requires_grad=True), torch.randn(5, 8, generator=gen)]
    features[1].requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 2, 1])
    for epoch in (1, 2):  # ldam re-weights from epoch 2 of 2
        loss_fn.set_epoch(epoch)
        total, terms = loss_fn(logits, features, labels)
        assert total.dim() == 0 and torch.isfinite(total)
        assert set(terms) == {parse_method(name).base, *parse_method(name).aux}
        total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    for parameter in loss_fn.parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
    assert (classifier_weight.grad is not None) == ("bcl" in parse_method(name).aux)  # bcl's prototypes train it
    assert all(p is not classifier_weight for p in loss_fn.parameters())  # the model's, not the loss's


def test_bcl_hand_value() -> None:
    # z1 = z2 = e1 (class 0), prototypes c0 = e1, c1 = e2, t = 1. For z1: z2 and c0 are class 0 (|S_0 \ {z1}| = 2,
    # s = 1), c1 is class 1 (|S_1| = 1, s = 0): denominator e/2 + e/2 + 1 = e + 1; positives z2, c0 give
    # 1 - log(e + 1) each, so l = log(e + 1) - 1 = log(1 + 1/e) for both anchors.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = balanced_contrastive_loss(z, prototypes, torch.tensor([0, 0]), 1.0)
    assert got.item() == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def _bcl_by_definition(z: torch.Tensor, prototypes: torch.Tensor, labels: list[int], t: float) -> float:
    z = F.normalize(z.double(), dim=1)
    prototypes = F.normalize(prototypes.double(), dim=1)
    members = [(z[k], labels[k], k) for k in range(len(labels))] + [
        (prototypes[c], c, None) for c in range(len(prototypes))
    ]
    total = 0.0
    for i, y in enumerate(labels):
        others = [(v, c) for v, c, k in members if k != i]
        denominator = 0.0
        for c in range(len(prototypes)):
            in_class = [math.exp(float(z[i] @ v) / t) for v, cls in others if cls == c]
            denominator += sum(in_class) / len(in_class)  # class-averaging (every class has its prototype)
        positives = [float(z[i] @ v) / t for v, cls in others if cls == y]
        total += -sum(s - math.log(denominator) for s in positives) / len(positives)
    return total / len(labels)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_bcl_matches_its_definition_on_an_imbalanced_batch(t: float) -> None:
    gen = torch.Generator().manual_seed(5)
    z, prototypes = torch.randn(7, 5, generator=gen), torch.randn(4, 5, generator=gen)
    labels = [0, 0, 0, 0, 1, 2, 2]  # class 3 is absent from the batch: only its prototype stands for it
    got = balanced_contrastive_loss(z, prototypes, torch.tensor(labels), t)
    assert got.item() == pytest.approx(_bcl_by_definition(z, prototypes, labels, t), rel=1e-5)


# --- end to end ------------------------------------------------------------------------------------------------------

NEW_KEYS = ("focal_gamma", "ldam_max_margin", "ldam_scale", "drw_epoch", "la_tau", "supcon_temperature",
            "triplet_margin")  # fmt: skip


def test_cli_grid_with_the_long_tail_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """focal, ldam+drs (re-weighting and re-sampling from epoch 2 of 2), bsce+supcon and la+triplet+os train on
    digits with test_resnet; supcon's projection head is handed to the optimizer; a result without the new settings
    still counts as done."""
    optimised: list[list[tuple[int, ...]]] = []  # parameter shapes handed to each run's optimizer
    adam = torch.optim.Adam

    def recording_adam(params, **kwargs):  # noqa: ANN001, ANN003, ANN202
        params = list(params)
        optimised.append([tuple(p.shape) for p in params])
        return adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    methods = "focal,ldam+drs,bsce+supcon,la+triplet+os,la+bcl"
    args = ["run", "--task", "fine", "--ratios", "0.25", "--methods", methods, "--seeds", "1", "--epochs", "2",
            "--img-size", "16", "--majority-count", "20", "--batch-size", "16", "--backbone", "test_resnet",
            "--supcon-temperature", "0.2", "--out", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    for method in methods.split(","):
        run = tmp_path / f"fine__test_resnet__{method}__r0.25__s0"
        record = json.loads((run / "result.json").read_text())
        assert record["status"] == "finished"
        # drw_epoch is recorded resolved for the one method that switches at it (after the first 80% of 2 epochs)
        assert record["config"]["drw_epoch"] == (default_drw_epoch(2) if method == "ldam+drs" else None)
        assert record["config"]["supcon_temperature"] == 0.2
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        spec = parse_method(method)
        assert [row["epoch"] for row in rows] == [1, 2]
        setup = json.loads((run / "config.json").read_text())
        assert setup["classifier"] == ("cosine" if spec.base == "ldam" else "linear")
        assert all({f"train_loss_{term}" for term in (spec.base, *spec.aux)} <= set(row) for row in rows)
    assert len(optimised) == 5
    focal, supcon, bcl = optimised[0], optimised[2], optimised[4]
    dim = supcon[len(focal)][0]  # the model's parameters come first, then the projection head D -> D -> 128
    assert supcon[len(focal) :] == [(dim, dim), (dim,), (128, dim), (128,)]
    classes, width = focal[-2]  # the linear classifier [C, D_cls] (and its bias last)
    assert classes == 2
    # bcl: the features' head, then the prototypes' head D_cls -> D_cls -> 128 (the classifier only once, the model's)
    assert bcl[len(focal) :] == [(dim, dim), (dim,), (128, dim), (128,), (width, width), (width,), (128, width), (128,)]
    knn = json.loads((tmp_path / "fine__test_resnet__la+bcl__r0.25__s0" / "result.json").read_text())["metrics"]
    assert 0 <= knn["test_knn_acc"] <= 1

    path = tmp_path / "fine__test_resnet__ldam+drs__r0.25__s0" / "result.json"
    record = json.loads(path.read_text())
    for key in NEW_KEYS:
        del record["config"][key]  # as written before these settings existed
    path.write_text(json.dumps(record))
    rerun = CliRunner().invoke(cli.app, [*args[:6], "ldam+drs", *args[7:-4], "--out", str(tmp_path)])
    assert rerun.exit_code == 0, rerun.output
    assert "1 of 1 run already finished" in rerun.output
