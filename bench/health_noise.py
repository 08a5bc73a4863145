"""False rollbacks of healthy champions, and detection of real faults, by the
feedback-error-rate health check: the point-estimate rule (max 3x the error
rate at promotion, floor 0.01, any sample count) against Relearn's rule
(3x the 95 % upper bound of the rate at promotion, failing only when the 99 %
lower bound of the current rate is above it, at least 30 samples), both
with failureThreshold 2 consecutive checks.

Each simulated champion was promoted with ``--promotion-samples`` feedback
samples at a true error rate of 4 %, then is checked ``--looks`` times, each
over a check window holding 20-80 samples (windows of consecutive looks
share half their samples, as a 1m window looked at every 30 s does).
Healthy: the true rate stays 4 %. Fault: it jumps to ``--fault-rate``.
Prints rates with their Monte Carlo standard errors and the ratio against
the point-estimate rule measured in the same run.

    python bench/health_noise.py [--champions 2000] [--looks 120] [--promotion-samples 50]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from relearn.core import health

TRUE_RATE = 0.04


def point_rule(errors: float, samples: float, at_promotion: health.Counts) -> bool:
    limit = min(1.0, max(0.01, 3 * at_promotion.rate))
    return samples > 0 and errors / samples > limit


def relearn_rule(errors: float, samples: float, at_promotion: health.Counts) -> bool:
    return health.feedback_error_rate(health.Counts(errors, samples), at_promotion).result == "Failing"


def simulate(rule, rate: float, args: argparse.Namespace, seed: int) -> tuple[float, float, float]:
    """(share of champions rolled back, its standard error, mean looks to the rollback)."""
    rng = np.random.default_rng(seed)
    rolled, looks_to = 0, []
    for _ in range(args.champions):
        errors_at_promotion = rng.binomial(args.promotion_samples, TRUE_RATE)
        at_promotion = health.Counts(float(errors_at_promotion), float(args.promotion_samples))
        # Half-windows of 10-40 samples; each look's window is the last half and a fresh one.
        sizes = rng.integers(10, 41, size=args.looks + 1)
        errors = rng.binomial(sizes, rate)
        consecutive = 0
        for look in range(args.looks):
            samples = float(sizes[look] + sizes[look + 1])
            wrong = float(errors[look] + errors[look + 1])
            consecutive = consecutive + 1 if rule(wrong, samples, at_promotion) else 0
            if consecutive >= 2:
                rolled += 1
                looks_to.append(look + 1)
                break
    share = rolled / args.champions
    return share, math.sqrt(share * (1 - share) / args.champions), float(np.mean(looks_to)) if looks_to else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--champions", type=int, default=2000)
    parser.add_argument("--looks", type=int, default=120)
    parser.add_argument("--promotion-samples", type=int, default=50)
    parser.add_argument("--fault-rate", type=float, default=0.5)
    args = parser.parse_args()
    print(
        f"{args.champions} champions promoted on {args.promotion_samples} samples at {TRUE_RATE:.0%} errors, "
        f"{args.looks} looks each, failureThreshold 2"
    )
    rows = {}
    for name, rule in (("point estimate (baseline)", point_rule), ("relearn", relearn_rule)):
        healthy = simulate(rule, TRUE_RATE, args, seed=1)
        fault = simulate(rule, args.fault_rate, args, seed=2)
        rows[name] = (healthy, fault)
        print(
            f"{name:28s} false rollbacks {healthy[0]:.4f} ± {healthy[1]:.4f}   "
            f"fault ({args.fault_rate:.0%} errors) rolled back {fault[0]:.4f} ± {fault[1]:.4f} "
            f"after {fault[2]:.1f} looks"
        )
    base, ours = rows["point estimate (baseline)"][0][0], rows["relearn"][0][0]
    ratio = ours / base if base > 0 else math.nan
    print(f"false rollbacks, relearn / point estimate: {ratio:.3f}")


if __name__ == "__main__":
    main()
