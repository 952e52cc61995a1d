"""Listing commands do not pay for libraries they do not use (issue 18): each runs in a fresh interpreter, which
reports the heavy modules it imported."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "albumentations", "timm", "matplotlib", "cv2")


def _imported_by(*args: str) -> list[str]:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from bench import cli\n"
        f"result = CliRunner().invoke(cli.app, {list(args)!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tasks_lists_the_presets_without_torch_or_augmentation() -> None:
    assert _imported_by("tasks") == []


def test_data_package_names_load_on_first_use() -> None:
    import bench.data

    assert sorted(bench.data.__all__) == sorted(bench.data._HOMES)
    for name in bench.data.__all__:  # every public name resolves to the object of its home module
        home = __import__(f"bench.data.{bench.data._HOMES[name]}", fromlist=[name])
        assert getattr(bench.data, name) is getattr(home, name)


def test_methods_lists_the_components_without_torch() -> None:
    assert _imported_by("methods") == []


def test_method_names_are_the_loss_registry_s() -> None:
    import losses
    from bench import method_names

    assert method_names.BASE_LOSSES == tuple(losses.BASE_LOSSES)
    assert method_names.AUX_LOSSES == tuple(losses.AUX_LOSSES)
    assert set(method_names.METHOD_DESCRIPTIONS) == set(method_names.components())


def test_run_prints_its_leaderboard_without_matplotlib(tmp_path) -> None:  # noqa: ANN001
    imported = _imported_by(
        "run", "--task", "fine", "--ratios", "1", "--methods", "ce", "--seeds", "1", "--epochs", "1",
        "--img-size", "16", "--majority-count", "20", "--val-count", "0", "--batch-size", "16",
        "--backbone", "test_resnet", "--out", str(tmp_path / "runs"),
    )  # fmt: skip
    assert "torch" in imported and "matplotlib" not in imported


def test_reports_package_names_load_on_first_use() -> None:
    import reports
    import reports.aggregate  # binds the submodule on the package, after which the function must still win

    homes = {**reports._HOMES, "CellStats": "aggregate", "aggregate": "aggregate"}
    assert sorted(reports.__all__) == sorted(homes)
    for name in reports.__all__:
        home = __import__(f"reports.{homes[name]}", fromlist=[name])
        assert getattr(reports, name) is getattr(home, name)
    from reports import aggregate

    assert callable(aggregate) and aggregate is reports.aggregate
