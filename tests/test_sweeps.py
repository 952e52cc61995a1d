"""Hyper-parameter sweeps: a sweepable option given several values multiplies the grid for the methods that read it,
each value a plain run with its own folder (``fscl[sim_weight=0.3]``); errors name the flag or the TOML key."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench import cli
from bench.config import (
    OPTIONS_BY_NAME,
    SWEEPABLE_KEYS,
    ConfigError,
    load_config_file,
    resolve_layers,
    resolve_options,
)
from bench.plan import plan_run
from bench.results import RunFolder
from bench.session import _methods_text, render_settings, sweep_warning

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli.app, list(args))


def _plan(**options: object):
    """A plan on the bundled digits, task fine (1 vs 8), one ratio and seed unless given."""
    return plan_run(
        data="digits", config_path=None, task_names=("fine",), classes=None,
        options={"ratios": "0.5", "seeds": 1, **options},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- parsing


def test_several_values_parse_to_a_tuple_in_the_order_given_without_duplicates() -> None:
    assert resolve_options({"sim_weight": "0.03,0.1,0.3"})["sim_weight"] == (0.03, 0.1, 0.3)
    assert resolve_options({"cb_beta": " 0.999, 0.99 ,0.999"})["cb_beta"] == (0.999, 0.99)  # order kept
    assert resolve_options({"la_tau": "1,1.0,1.00"})["la_tau"] == 1.0  # one value after duplicates: a scalar
    assert resolve_options({"drw_epoch": "3,4"})["drw_epoch"] == (3, 4)  # an integer option's values stay integers
    assert resolve_options({"lr": [0.01, 0.001]})["lr"] == (0.01, 0.001)  # a TOML list arrives as a list


def test_a_single_value_parses_exactly_as_before() -> None:
    resolved = resolve_options({"sim_weight": "0.3", "cb_beta": 0.99, "drw_epoch": "5"})
    assert resolved["sim_weight"] == 0.3 and type(resolved["sim_weight"]) is float
    assert resolved["cb_beta"] == 0.99 and resolved["drw_epoch"] == 5 and type(resolved["drw_epoch"]) is int
    assert resolve_options({})["sim_weight"] == 0.1  # the paper's value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.1,x", "--sim-weight must be a number, got 'x'"),  # each value through the option's own parser
        ("0.1,-1", "--sim-weight must lie in [0, inf), got '-1'"),
        (",", "--sim-weight is empty"),
        ("0.1234567,0.1234568", "both read 0.123457 in a run folder's name"),  # would be one folder
    ],
)
def test_a_bad_value_among_several_names_the_flag(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve_options({"sim_weight": value})
    assert message in str(error.value)


def test_a_toml_list_sweeps_and_its_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text("cb_beta = [0.99, 0.999]\nmethods = ['cb']\n")
    file = load_config_file(path)
    resolved, sources = resolve_layers([(file.label, file.options)])
    assert resolved["cb_beta"] == (0.99, 0.999) and sources["cb_beta"] == str(path)
    path.write_text("cb_beta = [0.99, 1.5]\n")
    with pytest.raises(ConfigError, match=r"grid\.toml: cb_beta must lie in \[0, 1\), got 1\.5"):
        resolve_layers([(str(path), load_config_file(path).options)])


def test_a_list_for_an_option_that_does_not_sweep_stays_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--epochs must be an integer >= 1, got \[1, 2\]"):
        resolve_options({"epochs": [1, 2]})
    with pytest.raises(ConfigError, match="--cb-kind must be one of"):
        resolve_options({"cb_kind": "softmax,focal"})
    result = invoke("run", "--epochs", "1,2", "--dry-run", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "Invalid value for '--epochs'" in result.output


def test_sweepable_options_are_the_numeric_hyper_parameters_and_take_text_on_the_command_line() -> None:
    assert {"lr", "sim_weight", "cb_beta", "la_tau", "focal_gamma", "supcon_weight", "bcl_weight",
            "triplet_weight"} <= set(SWEEPABLE_KEYS)  # fmt: skip
    assert not {"epochs", "batch_size", "img_size", "cb_kind", "stages", "methods"} & set(SWEEPABLE_KEYS)
    for key in SWEEPABLE_KEYS:
        assert OPTIONS_BY_NAME[key].kind is str and OPTIONS_BY_NAME[key].settings  # "0.1,0.3" reaches the parser


# ---------------------------------------------------------------------------------------------- the grid


def test_each_method_is_multiplied_by_the_sweeps_it_reads_only() -> None:
    spec = _plan(methods="ce,fscl,cb", sim_weight="0.1,0.3", cb_beta="0.99,0.999", seeds=2).spec
    cells = spec.cells()
    # per seed (one task, backbone, ratio): ce 1 + fscl 2 (sim_weight) + cb 2 (cb_beta) = 5 cells; 2 seeds: 10
    assert len(cells) == 10
    assert [cell.seed for cell in cells] == [0] * 5 + [1] * 5  # seed-major, as without sweeps
    assert [cell.run_id for cell in cells[:5]] == [
        "fine__resnet18__ce__r0.5__s0",  # no swept setting read: the plain run id, so older results are still found
        "fine__resnet18__fscl[sim_weight=0.1]__r0.5__s0",
        "fine__resnet18__fscl[sim_weight=0.3]__r0.5__s0",
        "fine__resnet18__cb[cb_beta=0.99]__r0.5__s0",
        "fine__resnet18__cb[cb_beta=0.999]__r0.5__s0",
    ]
    ce, fscl_low, fscl_high, cb_low, cb_high = cells[:5]
    assert ce.sweep == () and ce.label == "ce"
    assert fscl_high.sweep == (("sim_weight", 0.3),) and fscl_high.label == "fscl[sim_weight=0.3]"
    assert cb_high.sweep == (("cb_beta", 0.999),)
    # every cell holds one scalar per setting: its own value for what it sweeps
    assert (fscl_low.settings.sim_weight, fscl_high.settings.sim_weight) == (0.1, 0.3)
    assert (cb_low.settings.cb_beta, cb_high.settings.cb_beta) == (0.99, 0.999)
    for cell in cells:
        assert not any(isinstance(getattr(cell.settings, key), tuple) for key in SWEEPABLE_KEYS)
    assert spec.sweeps == (("sim_weight", (0.1, 0.3)), ("cb_beta", (0.99, 0.999)))


def test_an_lr_sweep_multiplies_every_method_and_two_sweeps_multiply_each_other() -> None:
    cells = _plan(methods="ce,fscl+os", lr="0.001,0.01", sim_weight="0.1,0.3").spec.cells()
    # ce: 2 learning rates; fscl+os: 2 learning rates x 2 weights = 4; 6 in all
    assert [cell.label for cell in cells] == [
        "ce[lr=0.001]",
        "ce[lr=0.01]",
        "fscl+os[lr=0.001,sim_weight=0.1]",  # keys sorted in the name; the last setting of the table varies fastest
        "fscl+os[lr=0.001,sim_weight=0.3]",
        "fscl+os[lr=0.01,sim_weight=0.1]",
        "fscl+os[lr=0.01,sim_weight=0.3]",
    ]
    assert cells[4].run_id == "fine__resnet18__fscl+os[lr=0.01,sim_weight=0.1]__r0.5__s0"
    assert (cells[4].settings.lr, cells[4].settings.sim_weight) == (0.01, 0.1)


def test_the_sweep_is_recorded_but_does_not_key_the_run(tmp_path: Path) -> None:
    cells = _plan(methods="ce,fscl", sim_weight="0.1,0.3").spec.cells()
    ce, fscl = cells[0], cells[2]
    assert fscl.to_dict()["sweep"] == {"sim_weight": 0.3} and fscl.to_dict()["sim_weight"] == 0.3
    assert ce.to_dict()["sweep"] == {}
    assert "sweep" not in fscl.identity() and fscl.identity()["sim_weight"] == 0.3
    # A result written before sweeps existed (no "sweep" in its config) is still this run's result.
    plain = _plan(methods="ce").spec.cells()[0]
    assert plain.run_id == ce.run_id
    folder = RunFolder(tmp_path / plain.run_id)
    folder.finish(plain, {"status": "finished", "failure": None, "metrics": {}})
    stored = json.loads(folder.result.read_text())
    stored["config"].pop("sweep")
    folder.result.write_text(json.dumps(stored))
    assert folder.is_done(ce)


def test_cells_pickle_with_their_sweep_for_ray() -> None:
    cell = _plan(methods="fscl", sim_weight="0.1,0.3").spec.cells()[1]
    copy = pickle.loads(pickle.dumps(cell))
    assert copy == cell and copy.sweep == (("sim_weight", 0.3),) and copy.run_id == cell.run_id
    assert copy.settings.sim_weight == 0.3


def test_a_sweep_no_method_of_the_grid_reads_is_a_one_line_error(tmp_path: Path) -> None:
    result = invoke("run", "--data", "digits", "--methods", "ce,os", "--cb-beta", "0.9,0.99", "--dry-run",
                    "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 2
    assert result.output == (
        "error: --cb-beta 0.9,0.99 sweeps a setting that none of the methods ce, os reads; add cb to --methods or "
        "give one value\n"
    )
    path = tmp_path / "grid.toml"
    path.write_text("supcon_temperature = [0.05, 0.1]\nmethods = ['ce']\n")
    with pytest.raises(ConfigError, match=r"grid\.toml: supcon_temperature = \[0.05, 0.1\] sweeps .* add supcon or "):
        plan_run(data="digits", config_path=path, task_names=("fine",), classes=None, options={})
    _plan(methods="ce", sim_weight="0.1")  # one value for a setting no method reads: as before, no error


def test_the_settings_table_run_line_and_warning_show_the_sweep() -> None:
    plan = _plan(methods="ce,fscl", sim_weight="0.03,0.1,0.3")
    table = render_settings(plan.settings_rows())
    assert any(line.split() == ["sim_weight", "0.03,0.1,0.3", "flag"] for line in table)
    assert _methods_text(plan) == "2 methods in 4 variants"  # ce + 3 fscl
    assert _methods_text(_plan(methods="ce,fscl")) == "2 methods"
    assert sweep_warning(plan) is None  # a validation split of 100 per class to choose on
    warning = sweep_warning(_plan(methods="ce,fscl", sim_weight="0.1,0.3", val_count=0))
    assert warning is not None and "sim_weight is swept" in warning and "--val-count 0 leaves none" in warning
    assert sweep_warning(_plan(methods="ce,fscl", val_count=0)) is None


# ---------------------------------------------------------------------------------------------- end to end

TINY = ["--data", "digits", "--task", "fine", "--epochs", "1", "--img-size", "8", "--seeds", "1", "--ratios", "0.5",
        "--majority-count", "60", "--batch-size", "16", "--backbone", "test_resnet",
        "--methods", "ce,fscl"]  # fmt: skip


def test_a_sweep_grid_writes_a_folder_per_value_and_resumes_per_cell(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    first = invoke("run", *TINY, "--sim-weight", "0.1,0.3", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert "3 runs (1 task x 1 backbone x 1 ratio x 2 methods in 3 variants x 1 seed)" in first.output
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == [
        "fine__test_resnet__ce__r0.5__s0",
        "fine__test_resnet__fscl[sim_weight=0.1]__r0.5__s0",
        "fine__test_resnet__fscl[sim_weight=0.3]__r0.5__s0",
    ]
    for name, sweep in zip(names, ({}, {"sim_weight": 0.1}, {"sim_weight": 0.3}), strict=True):
        result = json.loads((out / name / "result.json").read_text())
        assert result["status"] == "finished" and result["method"] == name.split("__")[2].split("[")[0]
        assert result["config"]["sweep"] == sweep and result["sweep"] == sweep  # the report reads the top level
        assert f"done {name}:" in first.output  # the progress line keeps the [k=v] (rich markup would eat it)
        if sweep:
            assert result["config"]["sim_weight"] == sweep["sim_weight"]
        assert json.loads((out / name / "config.json").read_text())["sweep"] == sweep
    again = invoke("run", *TINY, "--sim-weight", "0.1,0.3", "--out", str(out))
    assert again.exit_code == 0, again.output
    assert "0 runs finished, 0 failed, 3 already done" in again.output
    more = invoke("run", *TINY, "--sim-weight", "0.3,1", "--out", str(out))  # one new value: only it trains
    assert more.exit_code == 0, more.output
    assert "1 run finished, 0 failed, 2 already done" in more.output
    assert (out / "fine__test_resnet__fscl[sim_weight=1]__r0.5__s0" / "result.json").is_file()


def test_a_dry_run_counts_the_sweeps_cells_and_warns_once_without_a_validation_split(tmp_path: Path) -> None:
    result = invoke("run", *TINY, "--sim-weight", "0.1,0.3", "--val-count", "0", "--dry-run", "--out",
                    str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dry run: 3 runs in the grid, 0 finished" in result.output  # ce + fscl at 2 weights
    assert result.output.count("warning: sim_weight is swept, but sweeps are chosen on the validation split") == 1
    assert not (tmp_path / "out").exists()


def test_help_shows_sweepable_options_take_several_numbers() -> None:
    result = CliRunner().invoke(cli.app, ["run", "--help"], env={"COLUMNS": "200"})
    lines = {line.split()[1]: line for line in result.output.splitlines() if line.startswith("│ --")}
    assert "NUMBER[,NUMBER...]" in lines["--sim-weight"] and "NUMBER[,NUMBER...]" in lines["--lr"]
    assert "NUMBER" not in lines["--epochs"]  # not sweepable: one integer
