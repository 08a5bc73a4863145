"""Experiment statistics under continuous monitoring, at base rate 0.85.

Prints, from seed-fixed simulations looking at both arms every 100 samples
per arm (one look per analysis interval):

- the false promotion rate (equal true rates) of the naive z-test looked at
  every interval against Relearn's default (sequential mSPRT, alpha 0.05,
  minSamplesPerArm 1000, minImprovement 0.02), and against the fixed method
  with the same settings;
- the mean samples per arm to a decision for true lifts of +2 and +4 points,
  against the fixed-horizon sample size (one look, power 0.8).

    python bench/ab_stats.py [--experiments 400] [--max-samples 40000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from relearn.core import stats
from relearn.core.stats import Arm, Settings

BASE, STEP = 0.85, 100


def run(lift: float, settings: Settings, experiments: int, max_samples: int, seed: int, naive: bool = False):
    rng = np.random.default_rng(seed)
    looks = max_samples // STEP
    promoted = rejected = 0
    samples: list[int] = []
    for _ in range(experiments):
        a = rng.binomial(STEP, BASE, size=looks).cumsum()
        b = rng.binomial(STEP, BASE + lift, size=looks).cumsum()
        pairs = [(Arm(sa, STEP * i), Arm(sb, STEP * i)) for i, (sa, sb) in enumerate(zip(a, b, strict=True), start=1)]
        if naive:
            hit = next((i for i, (x, y) in enumerate(pairs, 1) if stats.z_test(x, y)[1] < settings.alpha), None)
            decided = (stats.Verdict("Promote", "", "", 0, 0, 0, 0, 0), hit) if hit else None
        else:
            decided = stats.first_decision(pairs, settings)
        if decided is None:
            samples.append(max_samples)
            continue
        verdict, look = decided
        promoted += verdict.outcome == "Promote"
        rejected += verdict.outcome == "Reject"
        samples.append(look * STEP)
    return promoted / experiments, rejected / experiments, float(np.mean(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=400)
    parser.add_argument("--max-samples", type=int, default=40_000, help="per arm; undecided experiments count this")
    args = parser.parse_args()
    default = Settings()
    fixed = Settings(method="fixed")
    started = time.perf_counter()
    print(f"base rate {BASE}, a look every {STEP} samples per arm, up to {args.max_samples}, {args.experiments} runs")
    print("\nfalse promotion rate with equal true rates (continuous monitoring):")
    naive, _, _ = run(0.0, Settings(alpha=0.05), args.experiments, 10_000, seed=1, naive=True)
    seq, _, _ = run(0.0, default, args.experiments, 10_000, seed=1)
    fix, _, _ = run(0.0, fixed, args.experiments, 10_000, seed=1)
    print(f"  naive z-test at every look (p < 0.05)       {naive:6.1%}")
    print(f"  fixed method looked at every interval        {fix:6.1%}  (p < 0.05, >= 1000/arm, lift >= 2 pts)")
    print(f"  Relearn default (sequential mSPRT)           {seq:6.1%}  (guaranteed <= 5%)")
    print(f"  ratio naive / default: {naive / max(seq, 1 / args.experiments):.0f}x")
    print("\nmean samples per arm to a decision (undecided at the cap count as the cap):")
    design = stats.fixed_horizon(BASE, default.min_improvement)
    print(f"  a fixed-horizon test sized for the minimum improvement (+2 pts, power 0.8) needs {design} per arm")
    for lift in (0.02, 0.04):
        promoted, rejected, mean = run(lift, default, args.experiments, args.max_samples, seed=2)
        print(
            f"  true +{lift * 100:.0f} pts: sequential {mean:7.0f} per arm (promoted {promoted:.0%}, "
            f"rejected {rejected:.0%}); ratio to {design}: {mean / design:.2f}"
            f" (a horizon sized for +{lift * 100:.0f} pts: {stats.fixed_horizon(BASE, lift)})"
        )
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
