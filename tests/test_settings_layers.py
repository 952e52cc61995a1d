"""Settings in layers: flag > --config file > the data root's bench.toml > the data set's defaults > the paper, each
value shown and recorded with its source; every option declared once (flag, TOML key, default in the help)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.config import OPTIONS, PAPER_DEFAULTS, load_config_file, resolve_layers
from bench.plan import plan_run

runner = CliRunner()
CLASSES = ("water-deer", "roe-deer", "wild-boar")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def _write_folder(root: Path, counts: tuple[int, ...] = (12, 8, 6)) -> Path:
    """Three classes of small PNGs in train/ and test/ (4 test images each)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, count in zip(CLASSES, counts, strict=True):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count if split == "train" else 4):
                Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)).save(folder / f"{i:03}.png")
    return root


ROOT_FILE = """\
epochs = 1
img_size = 16
seeds = 1
ratios = [0.5]
majority_count = 8
batch_size = 4
methods = ["ce"]

[tasks.fine]
classes = ["water-deer", "roe-deer"]

[tasks.three]
classes = ["wild-boar", "water-deer", "roe-deer"]
"""


def _settings(output: str) -> dict[str, tuple[str, str]]:
    """The settings table at the start of bench run's output: name -> (value, source)."""
    rows = {}
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("settings ("))
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        name, value, source = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        rows[name] = (value, source)
    return rows


def test_a_data_root_bench_toml_is_a_layer_of_settings(tmp_path: Path) -> None:
    """The issue's case: its options were dropped, and a 2-second job planned 50 runs of 100 epochs at 224 px."""
    root = _write_folder(tmp_path / "wildlife")
    (root / "bench.toml").write_text(ROOT_FILE)
    out = tmp_path / "runs"
    dry = runner.invoke(cli.app, ["run", "--data", str(root), "--task", "fine", "--dry-run", "--out", str(out)])
    assert dry.exit_code == 0, dry.output
    source = str(root / "bench.toml")
    settings = _settings(dry.output)
    assert settings["epochs"] == ("1", source) and settings["img_size"] == ("16", source)
    assert settings["ratios"] == ("0.5", source) and settings["seeds"] == ("1", source)
    assert settings["backbones"] == ("resnet18", "paper")
    assert "dry run: 1 run" in dry.output  # 1 seed x 1 ratio x 1 method

    result = runner.invoke(cli.app, ["run", "--data", str(root), "--task", "fine", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert _settings(result.output)["epochs"] == ("1", source)
    config = json.loads((out / "fine__resnet18__ce__r0.5__s0" / "config.json").read_text())
    assert config["epochs"] == 1 and config["img_size"] == 16 and config["batch_size"] == 4
    assert config["sources"]["epochs"] == source and config["sources"]["lr"] == "paper"
    assert config["data_given"] == str(root)
    result_file = json.loads((out / "fine__resnet18__ce__r0.5__s0" / "result.json").read_text())
    assert result_file["sources"] == config["sources"]  # the report reads them here, not from config.json


def test_precedence_flag_over_config_file_over_data_root_over_data_set_over_paper(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "wildlife")
    (root / "bench.toml").write_text(ROOT_FILE)
    config = tmp_path / "grid.toml"
    config.write_text('data = "wildlife"\nepochs = 2\nimg_size = 24\n')

    def plan(**options: object):
        return plan_run(data=None, config_path=config, task_names=("fine",), classes=None, options=options)

    layered = plan(epochs=3)
    assert layered.options["epochs"] == 3 and layered.sources["epochs"] == "flag"
    assert layered.options["img_size"] == 24 and layered.sources["img_size"] == str(config)
    assert layered.options["seeds"] == 1 and layered.sources["seeds"] == str(root / "bench.toml")
    assert layered.options["lr"] == PAPER_DEFAULTS["lr"] and layered.sources["lr"] == "paper"
    digits = plan_run(data="digits", config_path=None, task_names=("fine",), classes=None, options={})
    assert digits.sources["img_size"] == "data set default (digits)" and digits.options["img_size"] == 32
    cell = layered.spec.cells()[0]
    assert dict(cell.sources)["epochs"] == "flag" and cell.settings.epochs == 3


def test_a_data_root_file_holds_long_tailed_tasks(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "wildlife")
    (root / "bench.toml").write_text(ROOT_FILE)
    plan = plan_run(data=str(root), config_path=None, task_names=("three",), classes=None, options={})
    assert plan.spec.tasks == (("three", ("wild-boar", "water-deer", "roe-deer")),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch = 1\n", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("epochs = 'many'\n", "epochs must be an integer >= 1, got 'many'"),
        ('[tasks.fine]\nclasses = ["water-deer", "elk"]\n', "elk"),
    ],
)
def test_a_bad_data_root_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    root = _write_folder(tmp_path / "wildlife")
    (root / "bench.toml").write_text(text)
    result = runner.invoke(cli.app, ["run", "--data", str(root), "--classes", "water-deer", "roe-deer", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(root / "bench.toml") in result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")


def test_the_same_folder_written_differently_is_the_same_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs are keyed by the data's fingerprint, not the string typed: wildlife, wildlife/ and ../x/wildlife."""
    root = _write_folder(tmp_path / "x" / "wildlife")
    (root / "bench.toml").write_text(ROOT_FILE)
    out = tmp_path / "runs"
    monkeypatch.chdir(tmp_path / "x")
    first = runner.invoke(cli.app, ["run", "--data", "wildlife", "--task", "fine", "--out", str(out)])
    assert first.exit_code == 0, first.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for given in ("../x/wildlife/", str(root)):
        again = runner.invoke(cli.app, ["run", "--data", given, "--task", "fine", "--out", str(out)])
        assert again.exit_code == 0, again.output
        assert "1 of 1 run" in again.output
    result = json.loads((out / "fine__resnet18__ce__r0.5__s0" / "result.json").read_text())
    assert result["dataset"] == str(root.resolve())  # one data set in a report, whatever was typed


def test_classes_take_a_comma_as_well_as_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    received: dict[str, object] = {}
    monkeypatch.setattr("bench.session.run_session", lambda **kwargs: received.update(kwargs) or 0)
    for args in (["--classes", "1,8", "--ratios", "0.1"], ["--classes=1,8"], ["--classes", "1", "8"]):
        result = runner.invoke(cli.app, ["run", *args])
        assert result.exit_code == 0, result.output
        assert received["classes"] == ("1", "8")


def test_every_option_has_a_flag_a_toml_key_and_its_true_default_in_the_help(tmp_path: Path) -> None:
    """Options are declared once; this checks what is derived from the declaration reaches the user."""
    result = CliRunner().invoke(cli.app, ["run", "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for option in OPTIONS:
        line = next((line for line in lines if f" {option.flag_name} " in line), None)
        assert line is not None, option.flag_name
        assert f"[{option.default_text()}]" in line or f"[paper: {option.default_text()}]" in line, line
        if option.default is not None:  # the TOML key, with the default's own value, resolves to the default
            value = list(option.default) if isinstance(option.default, tuple) else option.default
            path = tmp_path / f"{option.name}.toml"
            path.write_text(f"{option.name} = {json.dumps(value)}\n")
            file = load_config_file(path)
            resolved, sources = resolve_layers([(file.label, file.options)])
            assert resolved[option.name] == option.default and sources[option.name] == str(path)
    for panel in ("Grid", "Data and protocol", "Training", "Method hyper-parameters", "Hardware", "Scale-out"):
        assert f"─ {panel} " in result.output, panel


def test_a_run_says_before_training_when_the_data_cannot_give_an_asked_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.grid import GridSummary

    monkeypatch.setattr("bench.session.run_grid", lambda spec, *a, **k: GridSummary(total=len(spec.cells())))
    args = ["run", "--ratios", "0.01,0.001", "--majority-count", "60", "--methods", "ce", "--seeds", "1"]
    result = runner.invoke(cli.app, [*args, "--epochs", "1", "--img-size", "16", "--dry-run"])
    assert "ratio 0.001 asks 0.06 minority images of 60; it gets 1 (actual ratio 0.0167)" in result.output
    result = runner.invoke(cli.app, [*args, "--epochs", "1", "--img-size", "16"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "note: task fine: ratios 0.01 and 0.001 give the same training subset (60 vs 1)" in lines
    assert lines.index("note: task fine: ratios 0.01 and 0.001 give the same training subset (60 vs 1)") < 15


def test_a_drw_epoch_recorded_as_none_means_what_it_meant_then() -> None:
    """Before --drw-epoch was recorded resolved, None meant 80% of the epochs rounded (8 of 10); today's default is
    floor(0.8 x E) + 1 (9 of 10, as Cao et al.'s code), so such a 10-epoch ldam run is not today's run."""
    from bench.results import legacy_value
    from losses import default_drw_epoch

    assert legacy_value("drw_epoch", {"epochs": 10, "drw_epoch": None}) == 8 != default_drw_epoch(10) == 9
    assert legacy_value("drw_epoch", {"epochs": 2}) == 2 == default_drw_epoch(2)
    assert legacy_value("bcl_weight", {"sim_weight": 0.5}) == 0.5
    assert legacy_value("oversample_epoch", {"classes": ["a", "b", "c"]}) == "full"
    assert legacy_value("oversample_epoch", {"classes": ["a", "b"]}) == "subset"


def test_a_copy_of_cifar10_trains_like_the_built_in_one(tmp_path: Path) -> None:
    """The shared CIFAR-10 JPEG copy planned 224 px / 100 epochs: a folder of CIFAR-10's ten classes takes the
    built-in cifar10's defaults (below its bench.toml and flags), and says so."""
    from bench.data.cifar import CIFAR10_CLASSES

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CIFAR10_CLASSES:
            (tmp_path / "c10" / split / name).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                tmp_path / "c10" / split / name / "0.png"
            )
    (tmp_path / "c10" / "bench.toml").write_text('epochs = 4\n[tasks.fine]\nclasses = ["deer", "horse"]\n')
    plan = plan_run(data=str(tmp_path / "c10"), config_path=None, task_names=("fine",), classes=None, options={})
    assert (plan.options["img_size"], plan.options["seeds"], plan.options["majority_count"]) == (32, 3, 5000)
    assert plan.sources["img_size"] == "data set default (cifar10: its ten class folders)"
    assert plan.options["epochs"] == 4 and plan.sources["epochs"] == str(tmp_path / "c10" / "bench.toml")
    other = _write_folder(tmp_path / "wildlife")
    assert (
        plan_run(data=str(other), config_path=None, task_names=(), classes=CLASSES[:2], options={}).options["img_size"]
        == PAPER_DEFAULTS["img_size"]
    )
