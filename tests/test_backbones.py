"""Tests for the backbones package: tapped features from one forward pass over timm models (CPU, small inputs)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch import Tensor, nn

from backbones import (
    BackboneError,
    CosineClassifier,
    TappedBackbone,
    check_backbone,
    create_backbone,
    default_taps,
    describe_stages,
    factory,
    list_backbones,
)
from backbones.cosine import use_cosine_classifier

# (name, create_backbone kwargs, input side); all inputs are tiny so the file stays fast.
MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("resnet18", {}, 32),
    ("efficientnet_b0", {}, 32),
    ("convnext_atto", {}, 32),
    ("vit_tiny_patch16_224", {"img_size": 32}, 32),
]
MODEL_IDS = [m[0] for m in MODELS]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _all_taps(name: str, kwargs: dict[str, Any], num_classes: int = 3) -> TappedBackbone:
    probe = create_backbone(name, num_classes, taps=(), **kwargs)
    return create_backbone(name, num_classes, taps=tuple(range(len(probe.model.feature_info))), **kwargs)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_default_taps_shapes_and_logits(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = create_backbone(name, 5, **kwargs).eval()
    info = bb.model.feature_info
    n = len(info)
    assert bb.tap_indices == (n - 2, n - 1) == default_taps(bb.model) == default_taps(info)
    assert bb.tap_modules == tuple(info[i]["module"] for i in bb.tap_indices)
    assert bb.tap_channels == tuple(info[i]["num_chs"] for i in bb.tap_indices)
    with torch.no_grad():
        logits, feats = bb(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 5)
    assert [tuple(f.shape) for f in feats] == [(2, c) for c in bb.tap_channels]


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_all_taps_match_feature_info_and_forward_intermediates(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = _all_taps(name, kwargs).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        _, feats = bb(x)
        # Independent reference: timm's own intermediate extraction (NCHW, prefix tokens removed for ViT).
        ref = bb.model.forward_intermediates(x, indices=list(bb.tap_indices), intermediates_only=True)
    assert [f.shape[1] for f in feats] == [d["num_chs"] for d in bb.model.feature_info]
    assert len(ref) == len(feats)
    for f, r in zip(feats, ref, strict=True):
        torch.testing.assert_close(f, r.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


def test_resnet18_pooled_taps_match_manual_forward() -> None:
    bb = _all_taps("resnet18", {}).eval()
    m = bb.model
    x = torch.randn(2, 3, 40, 48)
    with torch.no_grad():
        _, feats = bb(x)
        a = m.act1(m.bn1(m.conv1(x)))
        l1 = m.layer1(m.maxpool(a))
        l2 = m.layer2(l1)
        l3 = m.layer3(l2)
        l4 = m.layer4(l3)
    assert bb.tap_modules == ("act1", "layer1", "layer2", "layer3", "layer4")
    for f, t in zip(feats, [a, l1, l2, l3, l4], strict=True):
        torch.testing.assert_close(f, t.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_embed_gives_the_forward_logits_and_the_classifier_input(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = create_backbone(name, num_classes=3, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        logits, _ = bb(x)
        embedded_logits, features = bb.embed(x)
        head = bb.model.get_classifier()
        torch.testing.assert_close(embedded_logits, logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(head(features), logits, rtol=1e-5, atol=1e-5)
    assert features.shape == (2, bb.model.num_features)


def test_resnet18_embed_features_are_the_pooled_last_stage() -> None:
    bb = create_backbone("resnet18", num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, taps = bb(x)
        _, features = bb.embed(x)
    torch.testing.assert_close(features, taps[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_gradients_flow_from_tap_features(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = create_backbone(name, 3, **kwargs).train()
    _, feats = bb(torch.randn(2, 3, size, size))
    loss = sum(f.pow(2).mean() for f in feats)  # logits deliberately unused
    assert isinstance(loss, Tensor)
    loss.backward()
    first_conv = bb.model.get_submodule(bb.model.pretrained_cfg["first_conv"])
    assert first_conv.weight.grad is not None
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_no_taps_registers_no_hooks(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = create_backbone(name, 4, taps=(), **kwargs).eval()
    assert _hook_count(bb.model) == 0
    assert bb.tap_indices == bb.tap_modules == bb.tap_channels == ()
    with torch.no_grad():
        logits, feats = bb(torch.randn(2, 3, size, size))
    assert feats == []
    assert logits.shape == (2, 4)


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_consecutive_batches_do_not_leak(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = create_backbone(name, 3, **kwargs).eval()
    with torch.no_grad():
        _, first = bb(torch.randn(3, 3, size, size))
        logits, second = bb(torch.randn(1, 3, size, size))
    assert [f.shape[0] for f in first] == [3, 3]
    assert [f.shape[0] for f in second] == [1, 1]
    assert logits.shape == (1, 3)
    assert bb._features == {}  # nothing (and no autograd graph) is retained between calls


def test_remove_hooks() -> None:
    bb = create_backbone("resnet18", 2)
    assert _hook_count(bb.model) == 2
    bb.remove_hooks()
    assert _hook_count(bb.model) == 0
    with torch.no_grad():
        _, feats = bb.eval()(torch.randn(1, 3, 32, 32))
    assert feats == []


def test_out_of_range_and_negative_taps() -> None:
    expected = "stage 7 out of range for resnet18: valid 0-4 (act1, layer1, layer2, layer3, layer4)"
    with pytest.raises(BackboneError) as exc:
        create_backbone("resnet18", 2, taps=(1, 7))
    assert str(exc.value) == expected
    with pytest.raises(BackboneError, match=r"^stage -1 out of range for resnet18: valid 0-4 \(act1, "):
        create_backbone("resnet18", 2, taps=(-1,))
    with pytest.raises(BackboneError, match="tapped twice"):
        create_backbone("resnet18", 2, taps=(3, 3))


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(BackboneError) as exc:
        create_backbone("resnt18", 2)
    msg = str(exc.value)
    assert msg.startswith("unknown backbone 'resnt18'; did you mean: resnet18")
    assert msg.endswith("? (bench backbones lists them)")
    assert "\n" not in msg
    with pytest.raises(BackboneError, match=r"^unknown backbone 'qqqzzz' \(bench backbones lists them\)$"):
        describe_stages("qqqzzz")


def test_pretrained_file_loads_backbone_and_replaces_head(tmp_path: Path) -> None:
    src = timm.create_model("resnet18", num_classes=10)
    path = tmp_path / "r18_10cls.pth"
    torch.save(src.state_dict(), path)

    bb = create_backbone("resnet18", 2, pretrained_file=path)
    assert torch.equal(bb.model.conv1.weight, src.conv1.weight)
    assert torch.equal(bb.model.layer4[1].bn2.running_var, src.layer4[1].bn2.running_var)
    assert bb.model.fc.out_features == 2
    assert bb.model.fc.weight.shape == (2, 512)

    # Same head size (and a training-checkpoint wrapper dict): the classifier is kept, not reinitialised.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, wrapped)
    same = create_backbone("resnet18", 10, pretrained_file=str(wrapped))
    assert torch.equal(same.model.fc.weight, src.fc.weight)


def test_pretrained_file_errors(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="pretrained file not found"):
        create_backbone("resnet18", 2, pretrained_file=tmp_path / "missing.pth")
    path = tmp_path / "r18.pth"
    torch.save(timm.create_model("resnet18", num_classes=10).state_dict(), path)
    # timm loads non-strictly once it drops the head; a partial match must still be refused.
    with pytest.raises(BackboneError, match="does not match resnet34: 96 missing key"):
        create_backbone("resnet34", 2, pretrained_file=path)
    with pytest.raises(BackboneError, match="cannot load"):
        create_backbone("efficientnet_b0", 2, pretrained_file=path)


def test_vit_pretrained_file_resizes_pos_embed(tmp_path: Path) -> None:
    src = timm.create_model("vit_tiny_patch16_224", num_classes=0)  # headless 224px checkpoint
    path = tmp_path / "vit.pth"
    torch.save(src.state_dict(), path)
    bb = create_backbone("vit_tiny_patch16_224", 3, img_size=32, pretrained_file=path)
    assert bb.model.pos_embed.shape == (1, 1 + 4, 192)
    assert torch.equal(bb.model.patch_embed.proj.weight, src.patch_embed.proj.weight)
    assert bb.model.head.out_features == 3


def test_img_size_ignored_for_cnn() -> None:
    bb = create_backbone("resnet18", 2, img_size=64, taps=())
    assert isinstance(bb.model, timm.models.ResNet)


def test_channels_last_and_autocast() -> None:
    bb = create_backbone("resnet18", 3, taps=(1, 4)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, ref = bb(x)
        bb = bb.to(memory_format=torch.channels_last)
        _, cl = bb(x.to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, amp = bb(x.to(memory_format=torch.channels_last))
    for r, c in zip(ref, cl, strict=True):
        torch.testing.assert_close(c, r, rtol=1e-4, atol=1e-5)
    assert logits.dtype == torch.bfloat16 and amp[0].dtype == torch.bfloat16
    for r, a in zip(ref, amp, strict=True):
        torch.testing.assert_close(a.float(), r, rtol=0.1, atol=0.1)


def test_deepcopy_hooks_feed_the_copy() -> None:
    bb = create_backbone("resnet18", 3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, before = bb(x)
        ema = copy.deepcopy(bb)
        for p in ema.parameters():
            p.mul_(0.5)
        _, copied = ema(x)
        _, after = bb(x)
    assert not torch.allclose(copied[1], before[1])
    torch.testing.assert_close(after[1], before[1])


def test_grad_checkpointing_bypass_is_reported() -> None:
    bb = create_backbone("resnet18", 2)
    bb.model.set_grad_checkpointing(True)
    with pytest.raises(BackboneError, match="gradient checkpointing"):
        bb(torch.randn(2, 3, 32, 32))


def test_describe_stages_and_list_backbones() -> None:
    assert describe_stages("resnet18") == [
        (0, "act1", 64, 2),
        (1, "layer1", 64, 4),
        (2, "layer2", 128, 8),
        (3, "layer3", 256, 16),
        (4, "layer4", 512, 32),
    ]
    names = list_backbones("resnet1*")
    assert "resnet18" in names and all(n.startswith("resnet1") for n in names)
    assert "convnext_atto" in list_backbones()
    assert default_taps([{"module": "a", "num_chs": 1, "reduction": 1}]) == (0,)


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_cosine_classifier_logits_are_cosines_of_the_pre_logits(name: str, kwargs: dict[str, Any], size: int) -> None:
    bb = create_backbone(name, 3, taps=(), cosine_classifier=True, **kwargs).eval()
    head = bb.model.get_classifier()
    assert isinstance(head, CosineClassifier)
    with torch.no_grad():
        logits, features = bb.embed(torch.randn(2, 3, size, size))
        by_hand = torch.stack(
            [torch.stack([torch.dot(f, w) / (f.norm() * w.norm()) for w in head.weight]) for f in features]
        )
        plain_logits, _ = bb(torch.randn(2, 3, size, size))
    torch.testing.assert_close(logits, by_hand, rtol=1e-5, atol=1e-5)
    assert plain_logits.abs().max() <= 1 + 1e-6


def test_cosine_classifier_trains_its_weights() -> None:
    bb = create_backbone("resnet18", 2, taps=(), cosine_classifier=True)
    logits, _ = bb(torch.randn(2, 3, 32, 32))
    logits[:, 0].sum().backward()
    assert bb.model.get_classifier().weight.grad is not None
    assert bb.model.get_classifier().weight.grad.abs().sum() > 0


def test_cosine_classifier_needs_a_linear_head() -> None:
    model = timm.create_model("resnet18", num_classes=2)
    model.fc = nn.Identity()
    with pytest.raises(BackboneError, match="not a linear layer"):
        use_cosine_classifier(model, "resnet18")


# --- checking a backbone without building its weights (issue 18) -----------------------------------------------------


def _recording_create_model(monkeypatch: pytest.MonkeyPatch, *, fail_on_meta: bool = False) -> list[str]:
    """Patch the timm.create_model backbones calls; return the list of devices the built models' weights are on.
    ``fail_on_meta``: raise as a constructor that reads tensor values would when built on the meta device."""
    built: list[str] = []
    create_model = timm.create_model

    def recording(*args: Any, **kwargs: Any) -> nn.Module:
        if fail_on_meta and torch.empty(0).device.type == "meta":
            raise NotImplementedError("Cannot copy out of meta tensor; no data!")
        model = create_model(*args, **kwargs)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(factory.timm, "create_model", recording)
    return built


@pytest.mark.parametrize(("name", "kwargs", "size"), MODELS, ids=MODEL_IDS)
def test_check_backbone_builds_no_weights(monkeypatch: pytest.MonkeyPatch, name: str, kwargs: dict, size: int) -> None:
    built = _recording_create_model(monkeypatch)
    check_backbone(name, 2, taps=(0, 1), img_size=kwargs.get("img_size"))
    stages = describe_stages(name)
    assert built == ["meta", "meta"]
    real = create_backbone(name, 2, taps=(), **kwargs)
    assert [(i, m, c, r) for i, m, c, r in stages] == [
        (i, str(d["module"]), int(d["num_chs"]), int(d["reduction"])) for i, d in enumerate(real.model.feature_info)
    ]


@pytest.mark.parametrize(
    ("name", "taps"),
    [("resnt18", None), ("qqqzzz", ()), ("resnet18", (1, 7)), ("resnet18", (-1,)), ("resnet18", (3, 3)),
     ("resnet18", "3"), ("resnet18.no_such_tag", None), ("", None)],
)  # fmt: skip
def test_check_backbone_raises_what_create_backbone_raises(name: str, taps: Any) -> None:
    with pytest.raises(BackboneError) as created:
        create_backbone(name, 2, taps=taps)
    with pytest.raises(BackboneError) as checked:
        check_backbone(name, 2, taps=taps)
    assert str(checked.value) == str(created.value)


def test_check_backbone_builds_on_the_cpu_where_the_meta_device_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _recording_create_model(monkeypatch, fail_on_meta=True)
    check_backbone("resnet18", 2, taps=(3, 4))
    assert built == ["cpu"]
    with pytest.raises(BackboneError, match=r"^stage 5 out of range for resnet18"):
        check_backbone("resnet18", 2, taps=(5,))
    assert describe_stages("resnet18")[-1] == (4, "layer4", 512, 32)


def test_a_grid_with_ldam_checks_the_cosine_classifier_before_training(tmp_path: Path) -> None:
    """ldam replaces the linear head by a cosine classifier; a backbone without a single linear head is a one-line
    error before any run trains, not a failure at the first ldam run."""
    from typer.testing import CliRunner

    from bench import cli

    name = "deit_tiny_distilled_patch16_224"  # timm names two heads: ('head', 'head_dist')
    args = ["run", "--backbone", name, "--ratios", "1", "--seeds", "1", "--epochs", "1", "--dry-run",
            "--out", str(tmp_path / "runs")]  # fmt: skip
    refused = CliRunner().invoke(cli.app, [*args, "--methods", "ce,ldam"])
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith(f"error: {name}: timm names no single classifier module")
    assert CliRunner().invoke(cli.app, [*args, "--methods", "ce"]).exit_code == 0
