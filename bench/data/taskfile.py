"""Read the `[tasks.NAME] classes = [majority, minority]` tables of a bench.toml or --config file."""

from __future__ import annotations

from pathlib import Path

from bench.data.errors import DataError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def load_task_file(path: Path) -> dict[str, tuple[str, str]]:
    """Task name -> (majority, minority) from the `[tasks.*]` tables of a TOML file; {} when it has none.

    Each task needs `classes = ["majority", "minority"]`: two different class names. Other keys and
    other tables are ignored. Whether the classes exist is checked against the data set, not here.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"{path}: not valid TOML ({' '.join(str(e).split())}); fix the syntax") from None
    tables = document.get("tasks", {})
    example = '[tasks.NAME] classes = ["majority", "minority"]'
    if not isinstance(tables, dict):
        raise DataError(f"{path}: `tasks` must be a table of tasks, like {example}")
    tasks: dict[str, tuple[str, str]] = {}
    for name, table in tables.items():
        classes = table.get("classes") if isinstance(table, dict) else None
        if not isinstance(classes, list) or len(classes) != 2 or not all(isinstance(c, str) and c for c in classes):
            raise DataError(f"{path}: task {name!r} needs exactly two class names, like {example}")
        if classes[0] == classes[1]:
            raise DataError(f"{path}: task {name!r} names {classes[0]!r} twice; give a majority and a minority class")
        tasks[name] = (classes[0], classes[1])
    return tasks
