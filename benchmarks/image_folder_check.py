#!/usr/bin/env python3
"""What the runner's check of an image folder costs (data/image_folder.py check_image_folder:
every class folder, and every file's header and end marker), against the stat() of every file
that the folder's fingerprint already makes. Writes benchmarks/results/image_folder_check.csv.

    python benchmarks/image_folder_check.py [--files 3000] [--side 400]

It writes `--files` JPEGs of side x side*3/4 pixels (ImageNet's typical size; ~30-60 KB each)
into a temporary folder, then times, cold and warm in the page cache, both walks per file;
the extrapolation to ImageNet-1K's 1,331,167 files is printed.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convnext_roadmap.data.image_folder import check_image_folder, image_problem  # noqa: E402

IMAGENET_FILES = 1_331_167


def make_folder(root: Path, files: int, side: int) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (side * 3 // 4, side, 3), dtype=np.uint8)
    for split, share in (("train", 0.9), ("val", 0.1)):
        for k in range(10):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(max(1, int(files * share / 10))):
                Image.fromarray(np.roll(base, i, axis=1)).save(folder / f"{i}.JPEG", quality=85)


def drop_page_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--side", type=int, default=400)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root, args.files, args.side)
        paths = sorted(root.rglob("*.JPEG"))
        size = sum(p.stat().st_size for p in paths) / len(paths)
        for cache in ("cold", "warm"):
            for what, fn in (("stat (the fingerprint)", lambda p: p.stat()), ("header + end marker", image_problem)):
                cold = drop_page_cache() if cache == "cold" else True
                started = time.perf_counter()
                for path in paths:
                    fn(path)
                per_file = (time.perf_counter() - started) / len(paths)
                rows.append(
                    {
                        "walk": what,
                        "page_cache": cache if cold else "warm (cannot drop)",
                        "files": len(paths),
                        "mean_file_kb": round(size / 1024, 1),
                        "us_per_file": round(per_file * 1e6, 1),
                        "imagenet_s": round(per_file * IMAGENET_FILES, 1),
                    }
                )
                print(
                    f"{what:24s} {rows[-1]['page_cache']:18s} {rows[-1]['us_per_file']:8.1f} us/file  "
                    f"ImageNet-1K: {rows[-1]['imagenet_s']:7.1f} s"
                )
        check_image_folder.cache_clear()
        started = time.perf_counter()
        check_image_folder(root)
        print(f"check_image_folder (warm): {time.perf_counter() - started:.2f} s for {len(paths)} files")
    out = ROOT / "benchmarks" / "results" / "image_folder_check.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
