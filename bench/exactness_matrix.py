"""The exactness matrix as a markdown table: for every tiny model family and component
kind, the masking engine's worst difference from literally zeroing the weights
(`coar.check_exact`, relative to the largest output) and how much the masks change
the outputs (same scale), over 3 random masks at alpha 0.5.

    python bench/exactness_matrix.py [--masks 3]

The models and kinds are those of tests/test_exactness_matrix.py (tests/exactness_models.py).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from exactness_models import matrix_cells, measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print("| model | kind | components | max error (relative) | effect of the masks |")
    print("|---|---|---:|---:|---:|")
    for name, kind in matrix_cells():
        r = measure(name, kind, n_masks=args.masks)
        print(f"| {name} | {kind} | {r['components']} | {r['error']:.1e} | {r['effect']:.2g} |")


if __name__ == "__main__":
    main()
