"""The GPU check in one command: the CUDA tests and ``bench speed`` on the GPU, every figure and log in one folder.

    python reports/speed/gpu_check.py OUT_DIR

Run from the bench folder with its environment active (``pip install -e ".[dev]"``); it installs and downloads
nothing. It writes to OUT_DIR:

- ``machine.txt``: the GPU (``nvidia-smi``, name, compute capability, memory), torch, CUDA, cuDNN, Triton, timm and
  Ray versions, CPU cores, the commit;
- ``cuda-tests.txt`` and ``cuda-tests.xml``: ``python -m pytest -m cuda tests/test_cuda.py -rA`` (a grid on the GPU
  and its recorded precision, the fp16 GradScaler, channels-last model and batch, pinned host batches,
  cudnn.benchmark, ``--compile``, a Ray grid with ``--gpus-per-run 0.5``, ``bench speed`` on the GPU);
- ``speed-cuda-224.md``, ``.json`` and ``.log`` (tables, figures, progress): ``bench speed --device cuda`` on
  ResNet-18 at 224 px, batch 64, in the default precision (bf16 autocast on compute capability 8.0+), with the
  input pipeline at 0, 4 and 8 loader workers and epochs on a generated ImageFolder of JPEGs (2 classes x 256
  images, cold and warm decode cache against a torchvision + PIL loop); ``speed-cuda-224-fp16.*`` the same steps
  with ``--amp fp16`` (GradScaler), and ``speed-cuda-224-compile.*`` with ``--compile`` if time is left;
- ``gpu-check.json``: the machine, and each step's command, exit code, seconds and log file.

Each step runs in its own process group, bounded by its own limit and by the whole check's (``GPU_CHECK_MINUTES``,
default 8), and a failing step does not stop the next; the exit code is 1 when any step failed or ran out of time.
Without a CUDA GPU it writes machine.txt and gpu-check.json, says so and exits 0; ``GPU_CHECK_DRY_RUN=1`` runs the
same steps on the CPU at tiny sizes instead, to check the script itself (70-90 s on 2 loaded cores). It has not yet
run on a GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
USAGE = "usage: python reports/speed/gpu_check.py OUT_DIR (the folder for the figures and logs)"


@dataclass
class Step:
    """One bounded command of the check and how it went."""

    name: str
    command: list[str]
    log: str  # file name under OUT_DIR for stdout (and stderr without ``errors``)
    limit_s: float
    errors: str | None = None  # file name under OUT_DIR for stderr (progress lines)
    exit_code: int | None = None  # None: not run (no time left)
    seconds: float = 0.0
    timed_out: bool = False


def _versions() -> dict[str, str]:
    """What the check ran on, as name -> text (a library that is missing says so)."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "CUDA (torch built with)": str(torch.version.cuda),
        "CUDA available": str(torch.cuda.is_available()),
        "cuDNN": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
        "CPU cores": str(os.cpu_count()),
        "platform": platform.platform(),
        "C compiler (inductor)": shutil.which("gcc") or shutil.which("cc") or "none",
    }
    for package in ("timm", "triton", "ray"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = "not installed"
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            memory = props.total_memory / 1024**3
            info[f"GPU {index}"] = f"{props.name}, compute capability {props.major}.{props.minor}, {memory:.0f} GiB"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    changes = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
    info["bench commit"] = (commit + (" with uncommitted changes" if changes.strip() else "")) if commit else "unknown"
    return info


def _nvidia_smi() -> str:
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi: not found\n"
    try:
        done = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "nvidia-smi: no answer within 60 s\n"
    return done.stdout + done.stderr


def _write_images(root: Path, per_class: int, test_per_class: int) -> None:
    """An ImageFolder of smooth random 256 x 256 JPEGs (low-frequency noise, sized like photographs)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for name in ("deer", "horse"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                coarse = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                image = Image.fromarray(coarse).resize((256, 256), Image.Resampling.BILINEAR)
                image.save(folder / f"{index:04d}.jpg", quality=90)


def _plan(out: Path, data: Path, dry_run: bool) -> list[Step]:
    """The commands of the check: the CUDA tests, then bench speed at 224 px (on the CPU at tiny sizes when dry,
    its files named speed-cpu-dry-32*)."""
    python = sys.executable
    tests = [python, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-rA", "-p", "no:cacheprovider",
             "--junitxml", str(out / "cuda-tests.xml")]  # fmt: skip
    if dry_run:
        speed = [python, "-m", "bench", "speed", "--device", "cpu", "--backbone", "test_resnet", "--img-size", "32",
                 "--batch-size", "8", "--steps", "2", "--workers", "0"]  # fmt: skip
        epochs = ["--data", str(data), "--classes", "deer", "horse", "--per-class", "8", "--epoch-workers", "0",
                  "--epoch-rounds", "1"]  # fmt: skip
        second = ["--amp", "bf16"]  # fp16 needs CUDA
    else:
        speed = [python, "-m", "bench", "speed", "--device", "cuda", "--backbone", "resnet18", "--img-size", "224",
                 "--batch-size", "64", "--steps", "30"]  # fmt: skip
        epochs = ["--workers", "0,4,8", "--data", str(data), "--classes", "deer", "horse", "--per-class", "256",
                  "--epoch-workers", "8", "--epoch-rounds", "2"]  # fmt: skip
        second = ["--amp", "fp16", "--workers", "0"]
    tag = "speed-cpu-dry-32" if dry_run else "speed-cuda-224"

    def speed_step(name: str, suffix: str, options: list[str], limit_s: float) -> Step:
        files = f"{tag}{suffix}"
        command = [*speed, *options, "--json", str(out / f"{files}.json")]
        return Step(name, command, f"{files}.md", limit_s, errors=f"{files}.log")

    steps = [
        Step("cuda tests", tests, "cuda-tests.txt", 240),
        speed_step("speed, default precision", "", epochs, 150),
        speed_step(f"speed, {second[1]}", f"-{second[1]}", second, 90),
    ]
    if not dry_run:  # inductor on the CPU would take minutes here
        compiled = ["--workers", "0", "--steps", "20", "--compile"]  # three models to compile: the rest of the time
        steps.append(speed_step("speed, --compile", "-compile", compiled, 240))
    return steps


def _run(step: Step, out: Path, seconds_left: float) -> None:
    """Run ``step`` in its own process group with stdout and stderr into its log; stop the group at its limit."""
    limit = min(step.limit_s, seconds_left)
    if limit < 10:
        print(f"[gpu check] {step.name}: not run, no time left", flush=True)
        return
    print(f"[gpu check] {step.name} (at most {limit:.0f} s): {' '.join(step.command)}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("GPU_CHECK_DRY_RUN", None)  # the test that runs this script must not run it again
    started = time.monotonic()
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(out / step.log, "w"))
        errors = files.enter_context(open(out / step.errors, "w")) if step.errors else log
        process = subprocess.Popen(step.command, cwd=REPO, stdout=log, stderr=errors, env=env, start_new_session=True)
        try:
            step.exit_code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            step.timed_out = True
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            step.exit_code = process.returncode
            errors.write(f"\n[gpu check] stopped after {limit:.0f} s\n")
    step.seconds = round(time.monotonic() - started, 1)
    state = "ran out of time" if step.timed_out else f"exit code {step.exit_code}"
    print(f"[gpu check] {step.name}: {state} after {step.seconds:.0f} s, log {out / step.log}", flush=True)


def _test_counts(junit: Path) -> dict[str, int] | None:
    """Tests, failures, errors and skips from pytest's JUnit XML (None when it was not written)."""
    if not junit.exists():
        return None
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    budget = float(os.environ.get("GPU_CHECK_MINUTES", "8")) * 60
    started = time.monotonic()
    try:
        import torch
    except ImportError as error:
        (out / "machine.txt").write_text(f"python {platform.python_version()}: {error}\n\n{_nvidia_smi()}")
        print(f"[gpu check] {error}: install bench first (pip install -e '.[dev]' in {REPO})", file=sys.stderr)
        return 1
    cuda = torch.cuda.is_available()
    dry_run = os.environ.get("GPU_CHECK_DRY_RUN", "") not in ("", "0")
    info = _versions()
    machine = "\n".join(f"{key}: {value}" for key, value in info.items())
    (out / "machine.txt").write_text(f"{machine}\n\n{_nvidia_smi()}")
    summary: dict[str, object] = {"cuda": cuda, "dry_run": dry_run, "machine": info, "steps": []}
    if not cuda and not dry_run:
        (out / "gpu-check.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[gpu check] no CUDA GPU visible: wrote {out / 'machine.txt'}; the tests and bench speed on CUDA need a "
              "GPU (GPU_CHECK_DRY_RUN=1 runs the steps on the CPU at tiny sizes)")  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        data = Path(scratch) / "images"
        _write_images(data, per_class=8 if dry_run else 256, test_per_class=4 if dry_run else 32)
        steps = _plan(out, data, dry_run)
        for step in steps:
            _run(step, out, budget - (time.monotonic() - started))
    summary["steps"] = [asdict(step) for step in steps]
    summary["tests"] = _test_counts(out / "cuda-tests.xml")
    summary["seconds"] = round(time.monotonic() - started, 1)
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [step.name for step in steps if step.exit_code != 0]
    outcome = f"failed: {', '.join(failed)}" if failed else "every step passed"
    print(f"[gpu check] done in {summary['seconds']:.0f} s; tests {summary['tests']}; {outcome}; files in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
