"""Option parsing, layered defaults, config files and the grid's cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import (
    PAPER_DEFAULTS,
    ConfigError,
    GridSpec,
    TrainSettings,
    load_config_file,
    parse_ratios,
    parse_stages,
    resolve_options,
)


def test_parse_ratios_accepts_commas_and_lists() -> None:
    assert parse_ratios("1, 0.1,0.01") == (1.0, 0.1, 0.01)
    assert parse_ratios([1, 0.5]) == (1.0, 0.5)
    assert parse_ratios("0.1,0.1") == (0.1,)


@pytest.mark.parametrize("text", ["0", "-0.1", "1.5", "abc", "", ",", "nan", "inf"])
def test_parse_ratios_rejects_bad_values(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_ratios(text)
    assert "\n" not in str(error.value)


def test_parse_stages() -> None:
    assert parse_stages(None) is None
    assert parse_stages("3,4") == (3, 4)
    with pytest.raises(ConfigError, match="not an integer"):
        parse_stages("x")
    with pytest.raises(ConfigError, match="negative"):
        parse_stages("-1")


def test_precedence_flag_over_file_over_dataset_over_paper() -> None:
    dataset = {"epochs": 12, "img_size": 32}
    file = {"epochs": 20, "lr": 0.01}
    flags = {"epochs": 3, "lr": None}
    options = resolve_options(dataset, file, flags)
    assert options["epochs"] == 3  # flag wins
    assert options["lr"] == 0.01  # None flag does not override the file
    assert options["img_size"] == 32  # dataset default over the paper's
    assert options["majority_count"] == PAPER_DEFAULTS["majority_count"] == 10000


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "--epochs must be an integer >= 1"),
        ({"cb_beta": 1.0}, "--cb-beta must lie in [0, 1)"),
        ({"cb_kind": "hinge"}, "--cb-kind must be one of softmax, sigmoid, focal"),
        ({"amp": "fp8"}, "--amp must be one of"),
        ({"warmup_epochs": 5, "epochs": 5}, "must be smaller than --epochs"),
        ({"nope": 1}, "unknown option 'nope'"),
        ({"device": "gpu"}, "--device must be auto, cpu"),
    ],
)
def test_resolve_options_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_options(options)
    assert message in str(error.value)


def test_config_file_tasks_data_and_options(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(
        'data = "wildlife"\nepochs = 50\nratios = [1, 0.1]\n\n[tasks.fine]\nclasses = ["water-deer", "roe-deer"]\n'
    )
    config = load_config_file(path)
    assert config.data == str((tmp_path / "wildlife").resolve())
    assert config.tasks == {"fine": ("water-deer", "roe-deer")}
    assert resolve_options(config.options)["ratios"] == (1.0, 0.1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs = [", "cannot read config file"),
        ("epoch = 3", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("[tasks.fine]\nclasses = ['a']", "needs classes"),
        ("[tasks.fine]\nclasses = ['a', 'a']", "names the same class twice"),
        ("data = 3", "'data' must be a string"),
    ],
)
def test_config_file_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config_file(path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "absent.toml")


def _spec(**overrides: object) -> GridSpec:
    settings = TrainSettings.from_options(resolve_options({"epochs": 2}))
    fields = {
        "dataset": "digits",
        "data_fingerprint": "x",
        "tasks": (("fine", ("1", "8")), ("coarse", ("0", "1"))),
        "backbones": ("resnet18",),
        "methods": ("ce", "fscl+os"),
        "ratios": (1.0, 0.1),
        "seeds": 3,
        "settings": settings,
    }
    return GridSpec(**{**fields, **overrides})


def test_grid_cells_are_the_full_product_seed_major() -> None:
    cells = _spec().cells()
    assert len(cells) == 2 * 1 * 2 * 2 * 3
    assert len({cell.run_id for cell in cells}) == len(cells)
    seeds = [cell.seed for cell in cells]
    assert seeds == sorted(seeds)  # every cell gets seed 0 before any gets seed 1
    assert cells[0].run_id == "fine__resnet18__ce__r1__s0"


def test_run_id_is_safe_for_hub_backbone_names() -> None:
    cell = _spec(backbones=("hf-hub:timm/resnet18.a1_in1k",)).cells()[0]
    assert "/" not in cell.run_id and ":" not in cell.run_id


def test_run_config_dict_is_json_friendly() -> None:
    record = _spec().cells()[0].to_dict()
    assert record["classes"] == ["1", "8"]
    assert record["epochs"] == 2 and record["method"] == "ce" and record["seed"] == 0
    assert "settings" not in record
