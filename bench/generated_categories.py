"""Write the generated categories that the recipe and scale benchmarks train on.

- `weave`, `weave-gray`: a woven-fabric texture, colour and 8-bit gray (512x512);
- `strip`: 2000x500 brushed-metal strips with small defects;
- `weave-big`: the weave with 600 good parts to train (120 of them calibrate) and 300 good test
  parts, to measure thresholds where calibration sets are large;
- `board`: circuit boards whose leads are 2-3 px wide at 256 px (512x512; a component missing or
  moved, a lead cut or bent), 200 good parts to train, 100 good and 100 defective to test (25 of each
  defect type), so that "% caught" and "% of good flagged" are stated to a part in a hundred;
- `tile`: a gray texture in images of varied sizes and six lightings (faint cracks, blowholes, broken
  corners), 300 good to train, 100 good and 99 defective to test;
- `toothbrush-gray`: the real dev set (../shared/data/mvtec_toothbrush) converted to gray;
- `toothbrush-lamps`, `weave-lamps`: the dev set and the weave with every image under one of the
  tile's six lightings (an object and a texture whose lamp varies part to part: what levelling,
  chosen for such lighting, does to each);
- `toothbrush-N` (with --scale N ...): N good parts made from the dev set's 60 by the line-camera
  augmentation (shift, rotation, scale, exposure), JPEG at full size, train/good only.

    .venv/bin/python bench/generated_categories.py --out runs/categories
    .venv/bin/python bench/generated_categories.py --out runs/categories --scale 250 1000 3000
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from model.augment import augmented_view
from model.images import list_images, read_image
from model.synthetic import STRIP_SHAPE, lamp, write_category

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_toothbrush"


def write_converted_copy(source: Path, target: Path, converted: Callable[[Path], np.ndarray]) -> None:
    """The same MVTec-layout category with every image replaced by `converted(path)` (an array
    as cv2.imwrite takes it); masks copied."""
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() == ".png":
            out = target / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            if "ground_truth" in path.parts:
                shutil.copyfile(path, out)
            else:
                cv2.imwrite(str(out), converted(path))


def write_gray_copy(source: Path, target: Path) -> None:
    """The category with every image saved as 8-bit gray."""
    write_converted_copy(source, target, lambda path: cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))


def write_relit_copy(source: Path, target: Path, seed: int) -> None:
    """The category with every image under one of the six lamps of `model.synthetic.lamp`, drawn
    per image."""
    rng = np.random.default_rng(seed)

    def relit(path: Path) -> np.ndarray:
        image = read_image(path)
        return cv2.cvtColor(np.clip(image * lamp(image.shape[:2], rng)[..., None], 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)

    write_converted_copy(source, target, relit)


def write_augmented_good(source: Path, target: Path, count: int, seed: int) -> None:
    """`count` augmented copies of the good images in `source`/train/good, as JPEG files."""
    originals = list_images(source / "train" / "good")
    rng = np.random.default_rng(seed)
    out = target / "train" / "good"
    out.mkdir(parents=True, exist_ok=True)
    for index in tqdm(range(count), desc=f"{target.name}", unit="image"):
        image = read_image(originals[index % len(originals)])
        view = image if index < len(originals) else augmented_view(image, rng)
        cv2.imwrite(str(out / f"{index:05d}.jpg"), cv2.cvtColor(view, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/categories"))
    parser.add_argument("--scale", type=int, nargs="*", default=[], help="also write toothbrush-N training sets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    usual = dict(n_train=200, n_test_good=40, n_test_defective=40, seed=args.seed)
    generated = {
        "weave": dict(kind="weave", size=512, **usual),
        "weave-gray": dict(kind="weave", size=512, gray=True, **usual),
        "strip": dict(kind="strip", size=STRIP_SHAPE[1], **usual),
        "weave-big": dict(kind="weave", size=512, n_train=600, n_test_good=300, n_test_defective=40, seed=11),
        "board": dict(kind="board", size=512, n_train=200, n_test_good=100, n_test_defective=100, seed=16),
        "tile": dict(kind="tile", size=0, n_train=300, n_test_good=100, n_test_defective=99, seed=16),
    }
    for name, options in generated.items():
        if not (args.out / name).is_dir():
            print(f"writing {name}", flush=True)
            write_category(args.out / name, **options)
    if not (args.out / "toothbrush-gray").is_dir():
        write_gray_copy(DEV_SET, args.out / "toothbrush-gray")
    for name, source in (("toothbrush-lamps", DEV_SET), ("weave-lamps", args.out / "weave")):
        if not (args.out / name).is_dir():
            print(f"writing {name}", flush=True)
            write_relit_copy(source, args.out / name, args.seed)
    for count in args.scale:
        if not (args.out / f"toothbrush-{count}").is_dir():
            write_augmented_good(DEV_SET, args.out / f"toothbrush-{count}", count, args.seed)


if __name__ == "__main__":
    main()
