"""Drift verdict quality: per-check false alarms, detection power, KS p-values and speed.

    python bench/drift_quality.py [--quick] [--runs 200] [--naive-runs 20] [--seed 13]

Seed-fixed simulations of whole checks, each feature's reference and current
window drawn as multinomial bucket counts from the same distribution (no
drift), decided by Relearn's rule (``relearn.core.drift.compare_features`` +
``decide``, what ``drift_policy.assess`` runs) and by the per-feature rule it
replaced (bench/drift_naive.py), at the DriftPolicy defaults (PSI 0.2, JS
0.1, pValue 0.01, Benjamini-Hochberg, minSamples 500). Every rate comes with
its Monte Carlo standard error. Prints:

- false alarms per check for 1, 20, 200 and 500 features; numeric features
  with 5, 20 and 50 buckets at the reference quantiles (and with 30 % of the
  mass on one bucket edge), sparse categorical features (50 and 1000
  Zipf-distributed categories, and 20 beside 480 declared ones that never
  occur, every category present in both windows); windows of 1000/1000 and
  100000/1000 samples. Target: all <= 5 %. The old rule is slow (~1 ms a
  numeric feature, ~0.3 s a feature of 500+ categories: its merging is
  quadratic), so it runs fewer checks from 200 features on, and on 500+
  categories its rate beyond one feature is 1 - (1 - rate of one)^features
  (features independent; marked "~"), a lower bound of its real rate;
- detection of a 0.25-sd mean shift at 1000/1000 (target >= 90 %);
- the binned KS p-value (asymptotic Kolmogorov tail) against scipy's exact
  two-sample p-value at the same statistic;
- CPU time of one check, vectorised against the old per-feature loop
  (targets: 200 features x 20 buckets <= 50 ms, one 1000-category feature
  <= 20 ms).

``run(argv)`` is the entry point (bench/decision_quality.py calls it too);
it returns 0 when every target is met, 1 otherwise. The default run takes a
few minutes on one core; ``--quick`` about a minute.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))  # drift_naive, when imported from another bench

import drift_naive
from relearn.api.driftpolicy import DriftPolicySpec
from relearn.core import drift
from relearn.core.drift_policy import FeatureCounts, WindowData, assess

DEFAULTS = {"psi_threshold": 0.2, "js_threshold": 0.1, "alpha": 0.01, "min_samples": 500.0}
CORRECTION: drift.Correction = "benjamini-hochberg"
FALSE_ALARM_TARGET, POWER_TARGET = 0.05, 0.90
SIZES = {"1000/1000": (1000, 1000), "100000/1000": (100_000, 1000)}


@dataclass(frozen=True)
class Layout:
    """What one feature looks like: its kind, bucket probabilities and edges."""

    label: str
    kind: drift.FeatureKind
    probabilities: NDArray[np.float64]
    edges: tuple[float, ...] = ()


def numeric(buckets: int, atom: float = 0.0) -> Layout:
    """Buckets at the reference quantiles of N(0, 1); ``atom`` of the mass exactly on the middle edge."""
    edges = stats.norm.ppf(np.arange(1, buckets) / buckets)
    probabilities = np.full(buckets, (1 - atom) / buckets)
    if atom:
        probabilities[(buckets - 1) // 2] += atom  # a value equal to an edge counts in the bucket it closes (le)
    label = f"numeric, {buckets} buckets" + (f", {atom:.0%} on an edge" if atom else "")
    return Layout(label, "numeric", probabilities, tuple(float(e) for e in edges))


def zipf(categories: int, exponent: float = 1.1, declared: int = 0) -> Layout:
    """Zipf-distributed categories, plus ``declared`` ones that never occur
    (a counter series known to Prometheus, zero in both windows)."""
    weights = np.r_[1.0 / np.arange(1, categories + 1) ** exponent, np.zeros(declared)]
    label = f"categorical, {categories} Zipf categories" + (f" + {declared} empty" if declared else "")
    return Layout(label, "categorical", weights / weights.sum())


def shifted(buckets: int, shift: float) -> NDArray[np.float64]:
    """Bucket probabilities of N(shift, 1) over the reference-quantile buckets of N(0, 1)."""
    cdf = stats.norm.cdf(stats.norm.ppf(np.arange(1, buckets) / buckets) - shift)
    return np.diff(np.concatenate([[0.0], cdf, [1.0]]))


def draw(
    rng: np.random.Generator,
    layout: Layout,
    features: int,
    sizes: tuple[int, int],
    current_probabilities: NDArray[np.float64] | None = None,
    shifted_features: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Reference and current counts of ``features`` features (rows); the
    first ``shifted_features`` rows draw the current window from ``current_probabilities``."""
    probabilities = np.broadcast_to(layout.probabilities, (features, layout.probabilities.size)).copy()
    reference = rng.multinomial(sizes[0], probabilities).astype(float)
    if current_probabilities is not None and shifted_features:
        probabilities[:shifted_features] = current_probabilities
    current = rng.multinomial(sizes[1], probabilities).astype(float)
    return reference, current


def relearn_alarm(layout: Layout, reference: NDArray[np.float64], current: NDArray[np.float64]) -> bool:
    data = [
        drift.FeatureData(f"f{i}", layout.kind, *drift.check_layout(layout.kind, r, c, layout.edges), layout.edges)
        for i, (r, c) in enumerate(zip(reference, current, strict=True))
    ]
    comparisons = drift.compare_features(data, **DEFAULTS)
    return any(d for _, d in drift.decide(comparisons, CORRECTION, DEFAULTS["alpha"]))


def naive_alarm(layout: Layout, reference: NDArray[np.float64], current: NDArray[np.float64]) -> bool:
    features = [
        (f"f{i}", layout.kind, r, c, layout.edges) for i, (r, c) in enumerate(zip(reference, current, strict=True))
    ]
    return bool(drift_naive.check(features, **DEFAULTS, correction=CORRECTION))


def rate(hits: int, runs: int) -> tuple[float, float]:
    p = hits / runs
    return p, math.sqrt(max(p * (1 - p), 0.25 / runs) / runs)  # SE floored at a quarter hit


def alarm_rate(
    rng: np.random.Generator,
    decide: Callable[[Layout, NDArray[np.float64], NDArray[np.float64]], bool],
    layout: Layout,
    features: int,
    sizes: tuple[int, int],
    runs: int,
    **shift: object,
) -> tuple[float, float]:
    hits = 0
    for _ in range(runs):
        reference, current = draw(rng, layout, features, sizes, **shift)  # type: ignore[arg-type]
        hits += decide(layout, reference, current)
    return rate(hits, runs)


def cell(value: tuple[float, float], approx: bool = False) -> str:
    p, se = value
    return f"{'~' if approx else ' '}{100 * p:5.1f}% ± {100 * se:3.1f}"


def false_alarms(rng: np.random.Generator, runs: int, naive_runs: int, quick: bool) -> bool:
    layouts = [
        numeric(5),
        numeric(20),
        numeric(50),
        numeric(20, atom=0.3),
        zipf(50),
        zipf(20, declared=480),
        zipf(1000),
    ]
    counts = (1, 20, 200, 500)
    if quick:
        layouts = [numeric(5), numeric(50), numeric(20, atom=0.3), zipf(20, declared=480), zipf(1000)]
    wide_runs = max(3, naive_runs // 4)
    print(
        f"False alarms per check without drift ({runs} checks each for Relearn; for the old rule {naive_runs}, "
        f"{wide_runs} from 200 features on)"
    )
    print(f"{'layout':50} {'windows':12} {'features':>8}  {'Relearn':>15}  {'old per-feature rule':>20}")
    worst = 0.0
    for layout in layouts:
        for size_label, sizes in SIZES.items():
            single = None
            for features in counts:
                ours = alarm_rate(rng, relearn_alarm, layout, features, sizes, runs)
                worst = max(worst, ours[0])
                expensive = layout.kind == "categorical" and layout.probabilities.size > 100
                if expensive and features > 1 and single is not None:
                    p1, se1 = single
                    spread = min(0.5, features * se1 * (1 - p1) ** (features - 1))  # delta method, capped
                    old, approx = (1 - (1 - p1) ** features, spread), True
                else:
                    checks = naive_runs if features <= 20 else wide_runs
                    old, approx = alarm_rate(rng, naive_alarm, layout, features, sizes, checks), False
                    single = old if features == 1 else single
                print(f"{layout.label:50} {size_label:12} {features:8d}  {cell(ours):>15}  {cell(old, approx):>20}")
    met = worst <= FALSE_ALARM_TARGET
    print(f"worst Relearn false-alarm rate {100 * worst:.1f}% (target <= 5%: {'met' if met else 'NOT met'})\n")
    return met


def power(rng: np.random.Generator, runs: int, naive_runs: int) -> bool:
    print(f"Detection of a 0.25-sd mean shift at 1000/1000 ({runs} checks, {naive_runs} for the old rule)")
    print(f"{'layout':44} {'features':>8}  {'Relearn':>15}  {'old per-feature rule':>20}")
    worst = 1.0
    for buckets in (10, 20):
        layout = numeric(buckets)
        for features in (1, 20):
            shift = {"current_probabilities": shifted(buckets, 0.25), "shifted_features": 1}
            ours = alarm_rate(rng, relearn_alarm, layout, features, SIZES["1000/1000"], runs, **shift)
            old = alarm_rate(rng, naive_alarm, layout, features, SIZES["1000/1000"], naive_runs, **shift)
            if features == 1:
                worst = min(worst, ours[0])
            label = layout.label + (" (one of them shifted)" if features > 1 else "")
            print(f"{label:44} {features:8d}  {cell(ours):>15}  {cell(old):>20}")
    met = worst >= POWER_TARGET
    print(f"lowest Relearn power for one feature {100 * worst:.1f}% (target >= 90%: {'met' if met else 'NOT met'})\n")
    return met


def ks_p_values() -> None:
    """The binned KS p-value is the asymptotic Kolmogorov tail at the statistic;
    compare it with scipy's exact two-sample p-value at the same statistic."""
    print("Binned KS p-value (asymptotic Kolmogorov tail) against scipy's exact two-sample p-value")
    print(f"{'samples':>12} {'statistic':>10} {'exact':>10} {'Relearn':>10} {'Relearn/exact':>14}")
    lowest = math.inf
    for n1, n2 in ((50, 50), (500, 500), (1000, 1000), (200, 5000), (30, 1000)):
        effective = n1 * n2 / (n1 + n2)
        for level in (0.05, 0.01, 0.001):
            k = math.ceil(special.kolmogi(level) / math.sqrt(effective) * n1)
            statistic = k / n1  # reachable: k of the n1 reference values below every current value
            x, y = np.r_[np.zeros(k), np.ones(n1 - k)], np.ones(n2)
            exact = stats.ks_2samp(x, y, method="exact").pvalue
            ours = drift.binned_ks([k, n1 - k], [0, n2])[1]
            lowest = min(lowest, ours / exact)
            print(f"{n1:>5}/{n2:<6} {statistic:10.4f} {exact:10.3g} {ours:10.3g} {ours / exact:14.3f}")
    print(f"lowest ratio {lowest:.3f} (>= 1: the binned p-value is at or above the exact one at these sizes)\n")


def cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best * 1000


def window_of(layout: Layout, names: list[str], rows: NDArray[np.float64]) -> WindowData:
    """One window as drift_policy.assess reads it (categories named c0, c1, …)."""
    categories = tuple(f"c{j}" for j in range(rows.shape[1])) if layout.kind == "categorical" else ()
    return WindowData(
        {
            n: FeatureCounts(layout.kind, tuple(map(float, row)), layout.edges, categories)
            for n, row in zip(names, rows, strict=True)
        }
    )


def timing(rng: np.random.Generator, repeat: int) -> bool:
    print(f"CPU time of one check (best of {repeat}), through drift_policy.assess, against the old per-feature loop")
    met = True
    for layout, features, target in ((numeric(20), 200, 50.0), (zipf(1000), 1, 20.0)):
        reference, current = draw(rng, layout, features, SIZES["1000/1000"])
        names = [f"f{i}" for i in range(features)]
        spec = DriftPolicySpec.model_validate(
            {
                "model": "m",
                "prometheus": {"url": "http://unused"},
                "features": [{"name": n, "type": layout.kind} for n in names],
            }
        )
        windows = window_of(layout, names, reference), window_of(layout, names, current)
        ours = cpu_ms(partial(assess, spec, *windows), repeat)
        old = cpu_ms(partial(naive_alarm, layout, reference, current), max(1, repeat // 5))
        ok = ours <= target
        met &= ok
        print(
            f"  {features} x {layout.label}: Relearn {ours:6.1f} ms, old {old:7.1f} ms "
            f"({old / ours:5.1f}x faster; target <= {target:.0f} ms: {'met' if ok else 'NOT met'})"
        )
    print()
    return met


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer layouts and checks (about a minute)")
    parser.add_argument("--runs", type=int, default=None, help="checks per configuration for Relearn (200)")
    parser.add_argument("--naive-runs", type=int, default=None, help="checks per configuration, old rule (20)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(list(argv) if argv is not None else None)
    runs = args.runs or (60 if args.quick else 200)
    naive_runs = args.naive_runs or (10 if args.quick else 20)
    rng = np.random.default_rng(args.seed)
    started, cpu = time.perf_counter(), time.process_time()
    results = [
        false_alarms(rng, runs, naive_runs, args.quick),
        power(rng, max(runs, 200), naive_runs),
    ]
    ks_p_values()
    results.append(timing(rng, 5 if args.quick else 20))
    print(
        f"drift quality: {'all targets met' if all(results) else 'targets NOT met'} "
        f"({time.process_time() - cpu:.0f} s CPU, {time.perf_counter() - started:.0f} s wall)"
    )
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(run())
