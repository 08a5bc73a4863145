"""Labelled samples to promote a 0.85 -> 0.90 challenger: the shadow stage's
paired test against the unpaired A/B test at the same alpha and power.
Seed-fixed Monte Carlo of the decision core (:mod:`relearn.core.stats`),
each figure with its Monte Carlo standard error, the ratio in the same run.

In a shadow stage every labelled request is answered by both versions, so one
label scores both; the test looks at the discordant pairs (sequential
McNemar, :func:`relearn.core.stats.log_mixture_ratio`, always valid). The A/B
baseline splits labelled requests 50/50 between two independent arms (the
best split for it; a 10 % challenger weight needs several times more) and
runs the operator's default sequential test (:func:`relearn.core.stats.evaluate`)
with ``minImprovement`` 0.05, which is the true lift, so it is designed for
power 0.8 there. Both look every 25 labels per arm or pair after a gate of
100, alpha 0.05.

How much pairing saves depends on how often the two versions disagree. A
joint model with champion accuracy 0.85 and challenger 0.90: b = P(champion
right, challenger wrong), c = b + 0.05. A retrained model that keeps most of
its base's answers disagrees rarely (b = 0.02); b = 0.085 is independent
errors, the paired test's worst realistic case.

Printed per scenario: the probability of promotion within the budget, the
labels needed for 80 % power (the 0.8 quantile of labels at promotion) for
both tests, their ratio (bootstrap SE), and the fixed-horizon sizes (exact
McNemar power 0.8 vs the two-proportion z-test's); then the paired test's
false promotions over every look when both versions are equally accurate.

    python bench/shadow.py [--runs N] [--seed S] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from relearn.core import stats
from scipy.stats import binom

ALPHA = 0.05
CHAMPION, CHALLENGER = 0.85, 0.90
LIFT = CHALLENGER - CHAMPION
STEP, GATE = 25, 100
MAX_PAIRS = 8000
MAX_PER_ARM = 3000
POWER = 0.8


def thresholds(max_b: int, level: float) -> np.ndarray:
    """For each b, the least c whose mixture ratio reaches 1 / level (the paired
    test promotes at or above it); the ratio grows with c (a tested property)."""
    goal = math.log(1.0 / level)
    result = np.empty(max_b + 1, dtype=np.int64)
    c = 0
    for b in range(max_b + 1):
        while stats.log_mixture_ratio(b, c) < goal:
            c += 1
        result[b] = c
        c = max(0, c - 2)  # the next b needs at least about as many
    return result


def paired_labels(rng: np.random.Generator, runs: int, b_rate: float, c_rate: float) -> np.ndarray:
    """Labelled pairs at the first look that promotes (inf: none within MAX_PAIRS)."""
    looks = np.arange(STEP, MAX_PAIRS + 1, STEP)
    draws = rng.multinomial(STEP, [b_rate, c_rate, 1 - b_rate - c_rate], size=(runs, len(looks)))
    b = draws[..., 0].cumsum(axis=1)
    c = draws[..., 1].cumsum(axis=1)
    promote_at = thresholds(int(b.max()) + 1, ALPHA)
    futility_at = thresholds(int(c.max()) + 1, stats.PAIRED_FUTILITY_ALPHA)
    gate = looks >= GATE
    promote = gate & (c >= promote_at[b])
    reject = gate & (b >= futility_at[c]) & ~promote
    return first(looks, promote, reject)


def first(labels: np.ndarray, promote: np.ndarray, reject: np.ndarray) -> np.ndarray:
    decided = promote | reject
    index = np.where(decided.any(axis=1), decided.argmax(axis=1), len(labels) - 1)
    promoted = promote[np.arange(len(index)), index]
    return np.where(promoted, labels[index].astype(np.float64), np.inf)


def unpaired_labels(rng: np.random.Generator, runs: int) -> np.ndarray:
    """Labels (both arms) at the first look the A/B test promotes (inf: it rejects or never decides)."""
    per_arm = np.arange(STEP, MAX_PER_ARM + 1, STEP)
    sa = rng.binomial(STEP, CHAMPION, size=(runs, len(per_arm))).cumsum(axis=1)
    sb = rng.binomial(STEP, CHALLENGER, size=(runs, len(per_arm))).cumsum(axis=1)
    n = np.broadcast_to(per_arm, sa.shape).astype(np.float64)
    setting = stats.Settings(alpha=ALPHA, min_samples_per_arm=GATE, min_improvement=LIFT)
    looked = stats.evaluate(sa, n, sb, n, setting)
    gate = per_arm >= GATE
    return first(2 * per_arm, gate & looked.promote, gate & looked.reject)


def quantile(labels: np.ndarray) -> float:
    """Labels by which POWER of the runs have promoted (inf when fewer ever do)."""
    return float(np.quantile(labels, POWER, method="higher"))


def bootstrap(
    rng: np.random.Generator, paired: np.ndarray, unpaired: np.ndarray, draws: int = 400
) -> tuple[float, float, float]:
    """Bootstrap SEs of both quantiles and of their ratio (paired / unpaired)."""
    qp, qu, ratio = [], [], []
    for _ in range(draws):
        p = quantile(rng.choice(paired, paired.size))
        u = quantile(rng.choice(unpaired, unpaired.size))
        qp.append(p)
        qu.append(u)
        ratio.append(p / u)
    return _spread(qp), _spread(qu), _spread(ratio)


def _spread(values: list[float]) -> float:
    """The SD of bootstrap draws; a draw short of POWER has no such quantile
    (inf, or a ratio of 0), so the SD is over the others."""
    kept = np.asarray(values)
    kept = kept[np.isfinite(kept) & (kept > 0)]
    return float(np.std(kept)) if kept.size else math.nan


def mcnemar_horizon(b_rate: float, c_rate: float) -> int:
    """Fewest pairs at which the exact one-sided McNemar test, looked at once, has power 0.8."""

    def power(n: int) -> float:
        d = np.arange(n + 1)
        crit = np.array([_critical(int(k)) for k in d])
        q = c_rate / (b_rate + c_rate)
        return float(np.sum(binom.pmf(d, n, b_rate + c_rate) * binom.sf(crit - 1, d, q)))

    low, high = 10, 20
    while power(high) < POWER:
        low, high = high, high * 2
    while high - low > 5:
        middle = (low + high) // 2
        low, high = (middle, high) if power(middle) < POWER else (low, middle)
    return high


_CRITICAL: dict[int, int] = {}


def _critical(d: int) -> int:
    """Least c with exact McNemar p < ALPHA among d discordant pairs (d + 1: none)."""
    if d not in _CRITICAL:
        c = next((c for c in range(d + 1) if stats.mcnemar_p_value(d - c, c) < ALPHA), d + 1)
        _CRITICAL[d] = c
    return _CRITICAL[d]


def se_of(p: float, runs: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / runs)


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    unpaired = unpaired_labels(rng, args.runs)
    fixed_ab = 2 * stats.fixed_horizon(CHAMPION, LIFT, ALPHA)
    pu = float(np.isfinite(unpaired).mean())
    print(f"champion {CHAMPION} -> challenger {CHALLENGER}, alpha {ALPHA}, {args.runs} runs per test, seed {args.seed}")
    print(
        f"unpaired A/B (50/50, sequential, minImprovement {LIFT:.2f}): "
        f"P(promote) {pu:.3f} +- {se_of(pu, args.runs):.3f}, "
        f"mean labels at promotion {np.mean(unpaired[np.isfinite(unpaired)]):.0f}; "
        f"fixed z-test horizon {fixed_ab} labels"
    )
    ok = True
    for b_rate, words in ((0.02, "retrained model, few disagreements"), (0.085, "independent errors")):
        c_rate = b_rate + LIFT
        paired = paired_labels(rng, args.runs, b_rate, c_rate)
        pp = float(np.isfinite(paired).mean())
        q_paired, q_unpaired = quantile(paired), quantile(unpaired)
        se_p, se_u, se_ratio = bootstrap(rng, paired, unpaired)
        ratio = q_paired / q_unpaired
        horizon = mcnemar_horizon(b_rate, c_rate)
        print(f"\nb={b_rate}, c={c_rate:.3f} ({words}):")
        print(
            f"  paired sequential McNemar: P(promote) {pp:.3f} +- {se_of(pp, args.runs):.3f}, "
            f"mean labels at promotion {np.mean(paired[np.isfinite(paired)]):.0f}"
        )
        print(
            f"  labels for {POWER:.0%} power: paired {q_paired:.0f} +- {se_p:.0f}, "
            f"unpaired {q_unpaired:.0f} +- {se_u:.0f}; ratio paired/unpaired {ratio:.3f} +- {se_ratio:.3f}"
        )
        print(
            f"  fixed horizons (power 0.8, one look): exact McNemar {horizon} pairs vs z-test {fixed_ab} labels, "
            f"ratio {horizon / fixed_ab:.3f}"
        )
        ok &= ratio < 1.0
    # false promotions over every look: equally accurate versions (b = c)
    null = paired_labels(rng, args.runs, 0.05, 0.05)
    false = float(np.isfinite(null).mean())
    print(
        f"\nno better (b = c = 0.05): paired test promoted {false:.4f} +- {se_of(false, args.runs):.4f} of runs "
        f"over {MAX_PAIRS // STEP} looks (alpha {ALPHA})"
    )
    ok &= false <= ALPHA + 3 * se_of(false, args.runs)
    print(f"\n{time.perf_counter() - started:.1f} s; {'all targets met' if ok else 'A TARGET IS MISSED'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--quick", action="store_true", help="500 runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 500
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
