"""Tests for the losses package; expected values are worked out by hand."""

import math

import pytest
import torch
from torch import nn

from losses import (
    AUX_LOSSES,
    BASE_LOSSES,
    ClassBalancedLoss,
    ClassifierRef,
    FeatureSimilarityLoss,
    create_aux_loss,
    create_base_loss,
    effective_number_weights,
    inverse_frequency_weights,
)

LN2, LN4, LN4_3 = math.log(2.0), math.log(4.0), math.log(4.0 / 3.0)
LN3 = math.log(3.0)

# counts [1, 2] with beta 0.5: E = [1, (1 - 0.25) / 0.5] = [1, 1.5], 1/E = [1, 2/3] (sum 5/3), scaled to sum 2
W_HAND = (1.2, 0.8)
COUNTS_HAND = [1, 2]
BETA_HAND = 0.5

# Three samples, two classes. sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4, softmax([ln 3, 0]) = [3/4, 1/4].
LOGITS_HAND = torch.tensor([[0.0, 0.0], [LN3, -LN3], [LN3, -LN3]])
LABELS_HAND = torch.tensor([0, 0, 1])


# --- weighting -------------------------------------------------------------------------------------------------------


def test_effective_number_weights_known_counts() -> None:
    e0 = (1 - 0.99**100) / (1 - 0.99)  # 63.3968
    e1 = (1 - 0.99**10) / (1 - 0.99)  # 9.5618
    inv_sum = 1 / e0 + 1 / e1
    expected = [2 * (1 / e0) / inv_sum, 2 * (1 / e1) / inv_sum]  # [0.26212, 1.73788]
    w = effective_number_weights([100, 10], beta=0.99)
    assert w.dtype == torch.float32 and w.shape == (2,)
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert w.tolist() == pytest.approx([0.262116, 1.737884], abs=1e-5)
    assert w.sum().item() == pytest.approx(2.0, abs=1e-6)


def test_effective_number_weights_small_beta_hand() -> None:
    assert effective_number_weights(COUNTS_HAND, beta=BETA_HAND).tolist() == pytest.approx(W_HAND, abs=1e-6)


def test_effective_number_weights_sum_to_num_classes() -> None:
    w = effective_number_weights([500, 120, 33, 7, 1], beta=0.999)
    assert w.sum().item() == pytest.approx(5.0, abs=1e-5)
    assert torch.all(w[:-1] < w[1:])  # rarer class -> larger weight


def test_effective_number_weights_beta_zero_is_ones() -> None:
    assert effective_number_weights([1000, 10, 1], beta=0.0).tolist() == [1.0, 1.0, 1.0]


def test_effective_number_weights_beta_near_one_is_inverse_frequency() -> None:
    # 1/n for [1, 2, 4] = [1, 1/2, 1/4] (sum 7/4), scaled to sum 3 -> [12/7, 6/7, 3/7]
    expected = [12 / 7, 6 / 7, 3 / 7]
    assert inverse_frequency_weights([1, 2, 4]).tolist() == pytest.approx(expected, abs=1e-6)
    assert effective_number_weights([1, 2, 4], beta=0.999999).tolist() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_effective_number_weights_bad_beta(beta: float) -> None:
    with pytest.raises(ValueError, match="beta"):
        effective_number_weights([10, 5], beta=beta)


def test_weights_bad_counts() -> None:
    with pytest.raises(ValueError, match="class count must be >= 1, got 0 for class 1"):
        effective_number_weights([10, 0, 3])
    with pytest.raises(ValueError, match="got -2 for class 0"):
        inverse_frequency_weights([-2, 3])
    with pytest.raises(ValueError, match="empty"):
        effective_number_weights([])


# --- ClassBalancedLoss -----------------------------------------------------------------------------------------------


def _cb(kind: str, gamma: float = 0.0) -> ClassBalancedLoss:
    return ClassBalancedLoss(COUNTS_HAND, beta=BETA_HAND, gamma=gamma, kind=kind)


def test_cb_weights_buffer() -> None:
    loss = _cb("softmax")
    assert loss.weights.tolist() == pytest.approx(W_HAND, abs=1e-6)
    assert "weights" in dict(loss.named_buffers())
    assert "weights" in loss.state_dict()


def test_cb_softmax_hand_value_and_not_torch_weighted_mean() -> None:
    logits = torch.tensor([[0.0, 0.0], [LN3, 0.0], [LN3, 0.0]])
    # CE: softmax [1/2, 1/2] -> ln 2; [3/4, 1/4] with y=0 -> ln(4/3); with y=1 -> ln 4
    weighted = W_HAND[0] * LN2 + W_HAND[0] * LN4_3 + W_HAND[1] * LN4
    expected = weighted / 3  # plain batch mean
    torch_style = weighted / (W_HAND[0] + W_HAND[0] + W_HAND[1])  # divides by the sum of weights (3.2)
    got = _cb("softmax")(logits, LABELS_HAND).item()
    assert got == pytest.approx(expected, abs=1e-6)
    torch_got = nn.CrossEntropyLoss(weight=torch.tensor(W_HAND))(logits, LABELS_HAND).item()
    assert torch_got == pytest.approx(torch_style, abs=1e-6)
    assert got / torch_got == pytest.approx(3.2 / 3, rel=1e-5)  # sum of weights 3.2 vs batch size 3
    assert abs(got - torch_got) > 0.04


def test_cb_sigmoid_hand_value() -> None:
    # per class BCE: z=0 -> ln 2; z=ln3,t=1 or z=-ln3,t=0 -> ln(4/3); z=ln3,t=0 or z=-ln3,t=1 -> ln 4
    per_sample = [2 * LN2, 2 * LN4_3, 2 * LN4]
    expected = (W_HAND[0] * per_sample[0] + W_HAND[0] * per_sample[1] + W_HAND[1] * per_sample[2]) / 3
    assert _cb("sigmoid")(LOGITS_HAND, LABELS_HAND).item() == pytest.approx(expected, abs=1e-6)


def test_cb_focal_hand_value() -> None:
    # gamma=2: p_t = 1/2 -> (1/2)^2 = 1/4; p_t = 3/4 -> (1/4)^2 = 1/16; p_t = 1/4 -> (3/4)^2 = 9/16
    per_sample = [2 * LN2 / 4, 2 * LN4_3 / 16, 2 * LN4 * 9 / 16]
    expected = (W_HAND[0] * per_sample[0] + W_HAND[0] * per_sample[1] + W_HAND[1] * per_sample[2]) / 3
    assert _cb("focal", gamma=2.0)(LOGITS_HAND, LABELS_HAND).item() == pytest.approx(expected, abs=1e-6)


def test_cb_focal_gamma_zero_equals_sigmoid() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=gen) * 3
    labels = torch.tensor([0, 1, 2, 3, 3, 0])
    counts = [50, 20, 5, 1]
    sigmoid = ClassBalancedLoss(counts, beta=0.99, kind="sigmoid")(logits, labels)
    focal = ClassBalancedLoss(counts, beta=0.99, gamma=0.0, kind="focal")(logits, labels)
    assert focal.item() == pytest.approx(sigmoid.item(), rel=1e-6)


def test_cb_focal_finite_grads_on_extreme_logits() -> None:
    logits = torch.tensor([[200.0, -200.0], [-200.0, 200.0]], requires_grad=True)
    _cb("focal", gamma=0.5)(logits, torch.tensor([0, 0])).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "focal"])
def test_cb_half_precision_logits_give_float32(kind: str) -> None:
    loss = _cb(kind, gamma=2.0)
    got = loss(LOGITS_HAND.to(torch.bfloat16), LABELS_HAND)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(loss(LOGITS_HAND, LABELS_HAND).item(), abs=1e-2)


def test_cb_bad_args() -> None:
    with pytest.raises(ValueError, match="softmax, sigmoid, focal"):
        ClassBalancedLoss([10, 5], kind="hinge")
    with pytest.raises(ValueError, match="gamma"):
        ClassBalancedLoss([10, 5], gamma=-1.0, kind="focal")


# --- FeatureSimilarityLoss -------------------------------------------------------------------------------------------

# features [1,0], [0,1], [1,1], labels [0, 1, 0]; a = cos(45 deg) = 1/sqrt(2)
#   S = [[1, 0, a], [0, 1, a], [a, a, 1]],  T = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
#   S - T has 2 entries a - 1 and 2 entries a: sum of squares 2(a-1)^2 + 2a^2 = 4 - 2 sqrt(2), over 9 entries
FEATS_HAND = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
LABELS_FS = torch.tensor([0, 1, 0])
FS_HAND = (4 - 2 * math.sqrt(2)) / 9  # 0.13017


def test_fs_hand_value() -> None:
    assert FeatureSimilarityLoss()([FEATS_HAND], LABELS_FS).item() == pytest.approx(FS_HAND, abs=1e-6)
    assert FeatureSimilarityLoss()(FEATS_HAND, LABELS_FS).item() == pytest.approx(FS_HAND, abs=1e-6)


def test_fs_two_stages_sum() -> None:
    # [1,0], [-1,0], [2,0]: cos(0,1) = -1 (T 0), cos(0,2) = 1 (T 1), cos(1,2) = -1 (T 0) -> 4 entries of 1, over 9
    second = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [2.0, 0.0]])
    got = FeatureSimilarityLoss()([FEATS_HAND, second], LABELS_FS).item()
    assert got == pytest.approx(FS_HAND + 4 / 9, abs=1e-6)


def test_fs_feature_map_is_pooled() -> None:
    # [B=3, C=2, H=1, W=2]: channel means are [1, 0], [0, 1], [1, 1]
    fmap = torch.tensor(
        [
            [[[2.0, 0.0]], [[0.0, 0.0]]],
            [[[0.0, 0.0]], [[-1.0, 3.0]]],
            [[[0.5, 1.5]], [[1.0, 1.0]]],
        ]
    )
    assert FeatureSimilarityLoss()([fmap], LABELS_FS).item() == pytest.approx(FS_HAND, abs=1e-6)
    gen = torch.Generator().manual_seed(1)
    fmap = torch.randn(4, 5, 3, 3, generator=gen)
    labels = torch.tensor([0, 1, 0, 2])
    pooled = fmap.mean(dim=(2, 3))
    loss = FeatureSimilarityLoss()
    assert loss([fmap], labels).item() == pytest.approx(loss([pooled], labels).item(), abs=1e-6)


def test_fs_batch_of_one_is_zero() -> None:
    got = FeatureSimilarityLoss()([torch.tensor([[0.3, -2.0, 1.5]])], torch.tensor([4]))
    assert got.item() == pytest.approx(0.0, abs=1e-6)


def test_fs_same_class_identical_features_is_zero() -> None:
    feats = torch.tensor([[0.3, -2.0, 1.5]]).repeat(4, 1)
    assert FeatureSimilarityLoss()([feats], torch.tensor([2, 2, 2, 2])).item() == pytest.approx(0.0, abs=1e-6)


def test_fs_backward_finite_grads_with_zero_feature() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]], requires_grad=True)
    fmap = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(2), requires_grad=True)
    loss = FeatureSimilarityLoss()([feats, fmap], torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(feats.grad).all() and torch.isfinite(fmap.grad).all()
    assert feats.grad.abs().sum() > 0


def test_fs_bf16_input_gives_float32() -> None:
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(6, 8, generator=gen)
    labels = torch.tensor([0, 1, 0, 2, 1, 2])
    loss = FeatureSimilarityLoss()
    got = loss([feats.to(torch.bfloat16)], labels)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(loss([feats], labels).item(), abs=1e-2)


def test_fs_bad_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        FeatureSimilarityLoss()([], LABELS_FS)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        FeatureSimilarityLoss()([torch.ones(3, 2, 2)], LABELS_FS)
    with pytest.raises(ValueError, match="batch"):
        FeatureSimilarityLoss()([torch.ones(4, 2)], LABELS_FS)


# --- registry --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BASE_LOSSES))
@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "focal"])
def test_every_base_loss_runs(name: str, kind: str) -> None:
    loss = create_base_loss(name, [5, 2, 1], cb_beta=0.9, cb_gamma=1.0, cb_kind=kind)
    assert isinstance(loss, nn.Module)
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
    value = loss(logits, torch.tensor([0, 1, 2, 0]))
    assert value.dim() == 0 and value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(AUX_LOSSES))
def test_every_aux_loss_runs(name: str) -> None:
    weight = torch.randn(2, 5)  # a classifier [C, D_cls] for bcl's prototypes; the others ignore it
    loss = create_aux_loss(name, feature_dims=(8, 3), classifier=ClassifierRef(5, lambda: weight))
    assert isinstance(loss, nn.Module)
    gen = torch.Generator().manual_seed(5)
    feats = [torch.randn(4, 8, generator=gen, requires_grad=True), torch.randn(4, 3, generator=gen, requires_grad=True)]
    value = loss(feats, torch.tensor([0, 1, 0, 1]))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert feats[-1].grad is not None  # supcon, bcl and triplet use only the last tapped stage
    assert all(f.grad is None or torch.isfinite(f.grad).all() for f in feats)


def test_ce_hand_value_float32_and_ignores_cb_args() -> None:
    loss = create_base_loss("ce", [100, 1], cb_beta=0.5, cb_gamma=3.0, cb_kind="focal")
    logits = torch.tensor([[LN3, 0.0], [LN3, 0.0]], dtype=torch.bfloat16)
    got = loss(logits, torch.tensor([0, 1]))
    assert got.dtype == torch.float32
    # bf16(ln 3) = 1.1015625 -> softmax p0 = e^z / (e^z + 1), p1 = 1 / (e^z + 1)
    z = 1.1015625
    expected = (-math.log(math.exp(z) / (math.exp(z) + 1)) - math.log(1 / (math.exp(z) + 1))) / 2
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_cb_factory_passes_args() -> None:
    loss = create_base_loss("cb", COUNTS_HAND, cb_beta=BETA_HAND, cb_gamma=2.0, cb_kind="focal")
    assert isinstance(loss, ClassBalancedLoss)
    assert loss.weights.tolist() == pytest.approx(W_HAND, abs=1e-6)
    assert loss.kind == "focal" and loss.gamma == 2.0


def test_unknown_names_raise() -> None:
    with pytest.raises(ValueError, match="unknown loss 'xx'; valid: ce, cb"):
        create_base_loss("xx", [1, 2])
    with pytest.raises(ValueError, match="unknown loss 'nope'; valid: fscl"):
        create_aux_loss("nope")
