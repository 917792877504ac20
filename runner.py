#!/usr/bin/env python3
"""convnext-roadmap runner (work in progress: --list only)."""
import argparse
import sys

import pandas as pd

from roadmap.listing import roadmap_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--list", action="store_true", help="print the roadmap and exit")
    args = parser.parse_args(argv)
    if args.list:
        with pd.option_context("display.max_colwidth", 60, "display.width", 250):
            print(roadmap_table().drop(columns="change").to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
