"""The small CIFAR job of issue 18 written as a plain research loop: torchvision ImageFolder + PIL + transforms.

    python reports/speed/plain_loop.py --data ../shared/data/cifar10

The same job as ``bench run --data ../shared/data/cifar10 --classes deer horse --majority-count 1000 --ratios 1
--epochs 2 --seeds 1 --img-size 32 --methods ce --workers 2``: two classes (the first one the majority), a seeded
draw of ``--majority-count`` training images of each (ratio 1) and ``--val-count`` validation images of each held
out of the train split, timm ``resnet18`` from scratch with a 2-class head, Adam (lr 1e-3, weight decay 1e-5),
cosine decay per epoch, batch 64, RandAugment(2, 9) + horizontal flip + colour jitter + normalisation, every image
decoded with PIL every epoch; after the last epoch the model is evaluated on the whole test split of both classes
and on the validation images (as bench does: once, after training). Only the two classes' folders are listed
(``find_classes`` overridden), as a researcher restricting ImageFolder would.

Prints one line of JSON to stdout: the phases' seconds (``import``, ``index``, ``build``, ``epochs``, ``evaluate``),
``epoch_seconds`` and the test accuracies. ``--adam fused`` uses torch's fused Adam (bench's); the default is
torch's default implementation, what a plain loop gets.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import datasets  # noqa: E402
from torchvision import transforms as T  # noqa: E402

#: CIFAR-10's per-channel mean and std, the constants plain CIFAR code normalises with.
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class ClassFolder(datasets.ImageFolder):
    """torchvision's ImageFolder over only the named class folders (label = position in ``classes``)."""

    def __init__(self, root: Path, classes: list[str], transform: T.Compose) -> None:
        self.wanted = classes
        super().__init__(str(root), transform=transform)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self.wanted, {name: i for i, name in enumerate(self.wanted)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an ImageFolder root with train/ and test/")
    parser.add_argument("--classes", nargs=2, default=["deer", "horse"], help="majority, then minority class")
    parser.add_argument("--majority-count", type=int, default=1000, help="training images of each class (ratio 1)")
    parser.add_argument("--val-count", type=int, default=100, help="validation images of each class (0: none)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adam", choices=("default", "fused"), default="default", help="torch's Adam kind")
    return parser.parse_args(argv)


def check_data(args: argparse.Namespace) -> str | None:
    """A one-line problem with ``--data`` or the classes, or None."""
    for split in ("train", "test"):
        for name in args.classes:
            if not (args.data / split / name).is_dir():
                return f"no folder {args.data / split / name}: --data must be an ImageFolder root with train/ and test/"
    if args.majority_count < 1 or args.val_count < 0 or args.epochs < 1 or args.workers < 0:
        return "--majority-count and --epochs must be >= 1, --val-count and --workers >= 0"
    return None


def split_indices(targets: list[int], classes: int, count: int, val_count: int, seed: int) -> tuple[list, list]:
    """Per class a seeded permutation: the first ``val_count`` validate, the next ``count`` train."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(targets)
    train: list[int] = []
    val: list[int] = []
    for label in range(classes):
        order = rng.permutation(np.flatnonzero(labels == label))
        val += order[:val_count].tolist()
        train += order[val_count : val_count + count].tolist()
    return train, val


@torch.no_grad()
def accuracies(model: torch.nn.Module, loader: DataLoader, classes: int) -> list[float]:
    """Per-class accuracy of ``model`` on ``loader``."""
    model.eval()
    correct, total = np.zeros(classes), np.zeros(classes)
    for images, labels in loader:
        predicted = model(images).argmax(1)
        for label in range(classes):
            mask = labels == label
            correct[label] += (predicted[mask] == label).sum().item()
            total[label] += mask.sum().item()
    return (correct / np.maximum(total, 1)).tolist()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_data(args)
    if problem is not None:
        print(f"plain_loop: {problem}", file=sys.stderr)
        return 2
    phases = {"import": time.perf_counter() - STARTED}
    torch.manual_seed(args.seed)
    train_transform = T.Compose(
        [
            T.Resize((args.img_size, args.img_size)),
            T.RandAugment(num_ops=2, magnitude=9),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.4, 0.4, 0.1),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    test_transform = T.Compose([T.Resize((args.img_size, args.img_size)), T.ToTensor(), T.Normalize(MEAN, STD)])

    started = time.perf_counter()
    train_folder = ClassFolder(args.data / "train", args.classes, train_transform)
    eval_folder = ClassFolder(args.data / "train", args.classes, test_transform)
    test_folder = ClassFolder(args.data / "test", args.classes, test_transform)
    train_ids, val_ids = split_indices(train_folder.targets, 2, args.majority_count, args.val_count, args.seed)
    phases["index"] = time.perf_counter() - started

    started = time.perf_counter()
    loader_options = {"num_workers": args.workers}
    train_loader = DataLoader(
        Subset(train_folder, train_ids), batch_size=args.batch_size, shuffle=True, **loader_options
    )
    test_loader = DataLoader(test_folder, batch_size=2 * args.batch_size, **loader_options)
    val_loader = DataLoader(Subset(eval_folder, val_ids), batch_size=2 * args.batch_size, **loader_options)
    model = timm.create_model("resnet18", num_classes=2, pretrained=False)
    adam = {"fused": True} if args.adam == "fused" else {}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5, **adam)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    phases["build"] = time.perf_counter() - started

    epoch_seconds = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        model.train()
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        epoch_seconds.append(round(time.perf_counter() - started, 3))
    phases["epochs"] = sum(epoch_seconds)

    started = time.perf_counter()
    test = accuracies(model, test_loader, 2)
    val = accuracies(model, val_loader, 2) if val_ids else []
    phases["evaluate"] = time.perf_counter() - started
    record = {
        "phases": {name: round(seconds, 3) for name, seconds in phases.items()},
        "epoch_seconds": epoch_seconds,
        "train_images": len(train_ids),
        "val_images": len(val_ids),
        "test_images": len(test_folder),
        "test_minority_acc": round(test[1], 4),
        "test_balanced_acc": round(float(np.mean(test)), 4),
        "val_balanced_acc": round(float(np.mean(val)), 4) if val else None,
        "seconds": round(time.perf_counter() - STARTED, 3),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
