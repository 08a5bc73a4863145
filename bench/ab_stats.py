"""The headline of the experiment statistics at base rate 0.85, in seconds:
false promotions under continuous monitoring (a look every 100 samples per
arm) of the naive z-test, of ``method: fixed`` looked at every interval and
of Relearn's default, then samples per arm to a decision at +2 and +4 points
against the fixed horizon. The full grid, with Monte Carlo standard errors,
is ``bench/decision_quality.py``; this script reuses its simulation.

    python bench/ab_stats.py [--runs 4000] [--seed 1]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from dataclasses import replace

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import decision_quality as dq  # a sibling script, not a package
from relearn.core import stats

BASE, STEP = 0.85, 100.0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    default, fixed = dq.DEFAULT, replace(dq.DEFAULT, method="fixed")
    end = dq.horizon_small(BASE, 0.5, default)
    looks = np.arange(STEP, end + STEP, STEP)
    print(f"base rate {BASE}, a look every {STEP:.0f} samples per arm up to {looks[-1]:.0f}, {args.runs} runs")
    paths = dq.simulate(rng, args.runs, BASE, 0.0, 0.5, looks)
    naive, naive_se = dq.share_se(dq.naive_decisions(paths, default).promoted)
    fix, fix_se = dq.share_se(dq.first_decisions(paths, fixed).promoted)
    seq, seq_se = dq.share_se(dq.first_decisions(paths, default).promoted)
    print("\nfalse promotions with equal true rates (continuous monitoring, >= 1000 per arm):")
    print(f"  naive z-test at every look (p < 0.05)   {naive:6.1%} +- {naive_se:.1%}")
    print(f"  method fixed looked at every interval   {fix:6.1%} +- {fix_se:.1%}")
    print(f"  Relearn default (sequential)            {seq:6.1%} +- {seq_se:.1%}  (<= 5% by design)")
    print(f"  ratio naive / default: {naive / max(seq, 1 / args.runs):.1f}x")
    design = stats.fixed_horizon(BASE, default.min_improvement)
    print(f"\nsamples per arm to a decision; fixed horizon for +2 points (power 0.8): {design}")
    for lift in (0.02, 0.04):
        decided = dq.first_decisions(dq.simulate(rng, args.runs, BASE, lift, 0.5, looks), default)
        n = decided.samples
        print(
            f"  true +{lift * 100:.0f} pts: promoted {np.mean(decided.promoted):.1%}, mean {np.mean(n):.0f} "
            f"({np.mean(n) / design:.2f}x), median {np.median(n):.0f}, p90 {np.quantile(n, 0.9):.0f} "
            f"({np.quantile(n, 0.9) / design:.2f}x)"
        )


if __name__ == "__main__":
    main()
