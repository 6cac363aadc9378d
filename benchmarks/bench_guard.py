"""How often the class guard (``EvalConfig.max_class_drop_pt``) blocks a model with no harm, and
how often it catches real harm, measured on a finished run's own per-class evidence.

``make bench-guard`` reads the QuantEvaluator ``metrics.json`` of a run (``make run``'s
Fashion-MNIST by default) and, keeping each class's support and its number of discordant
examples (float right and int8 wrong, or the reverse) as measured:

- **no harm**: each discordant example goes either way with probability 1/2 (float and int8
  exchangeable: what a model with no harm looks like on these very classes);
- **at the tolerance**: every class loses exactly ``max_class_drop_pt`` on average, the worst
  case the guard must still let through;
- **harmed**: one class (the one with the most discordant examples, the hardest to judge) loses
  4 or 6 pt on average, the others none.

Each case is drawn ``trials`` times (seeded) and judged by the product's own guard
(``tfx_qat.quant_lib.evaluation.paired.guard`` with the EvalConfig defaults). Results: a JSON file the README renders.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Tuple

import numpy as np

from tfx_qat.quant_lib.artifacts.report_files import Metrics
from tfx_qat.quant_lib.config import DataSpec, EvalConfig
from tfx_qat.quant_lib.evaluation import paired

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "bench_guard_results.json")


def _classes(metrics: Dict[str, Any]) -> List[Dict[str, int]]:
    per_class = Metrics.load(metrics).overall.per_class_accuracy
    return [{"class": int(k), "n": v.paired.n, "float_only": v.paired.float_only,
             "int8_only": v.paired.int8_only} for k, v in sorted(
                 per_class.items(), key=lambda kv: int(kv[0]))]


def _block_rate(classes, drop_pt, rng, trials, cfg) -> float:
    """Share of ``trials`` simulated models the guard blocks; ``drop_pt``: each class's expected
    int8-minus-float drop (a list, one per class)."""
    blocked = 0
    for _ in range(trials):
        comps = {}
        for c, drop in zip(classes, drop_pt):
            moved = c["float_only"] + c["int8_only"]
            extra = int(round(c["n"] * drop / 100.0))  # examples the harm itself moves
            moved = max(moved, extra)
            share = 0.5 if moved == 0 else 0.5 + extra / (2.0 * moved)
            f_only = int(rng.binomial(moved, share))
            comps[f"class {c['class']}"] = paired.PairedAccuracy(c["n"], f_only, moved - f_only)
        blocked += bool(paired.guard(comps, cfg.max_class_drop_pt, cfg.class_drop_rule,
                                     cfg.class_drop_alpha))
    return blocked / trials


def measure(metrics: Dict[str, Any], source: str, trials: int = 2000,
            harm_pt: Tuple[float, ...] = (4.0, 6.0), seed: int = 0) -> Dict[str, Any]:
    cfg = EvalConfig(data=DataSpec())  # the defaults users get
    classes = _classes(metrics)
    worst = max(range(len(classes)), key=lambda i: classes[i]["float_only"] + classes[i]["int8_only"])
    rng = np.random.RandomState(seed)
    cases = {"no_harm": [0.0] * len(classes),
             "at_tolerance": [cfg.max_class_drop_pt] * len(classes),
             **{f"one_class_harmed_{h:g}pt": [h if i == worst else 0.0
                                               for i in range(len(classes))] for h in harm_pt}}
    comps = {f"class {c['class']}": paired.PairedAccuracy(c["n"], c["float_only"], c["int8_only"])
             for c in classes}
    return {"source": source, "trials": trials, "seed": seed, "harm_pt": list(harm_pt),
            "harmed_class": classes[worst]["class"],
            "guard": {"max_class_drop_pt": cfg.max_class_drop_pt, "rule": cfg.class_drop_rule,
                      "alpha": cfg.class_drop_alpha},
            "classes": classes,
            "observed_blocked": paired.guard(comps, cfg.max_class_drop_pt, cfg.class_drop_rule,
                                             cfg.class_drop_alpha),
            "block_rate": {k: _block_rate(classes, v, rng, trials, cfg) for k, v in cases.items()}}


def to_markdown(r: Dict[str, Any]) -> str:
    g, rate = r["guard"], r["block_rate"]
    n = min(c["n"] for c in r["classes"])
    return (f"Measured by `make bench-guard` on the per-class evidence of `{r['source']}` "
            f"({len(r['classes'])} classes, at least {n:,} examples each; {r['trials']:,} "
            f"simulated models per case, seed {r['seed']}), the default guard "
            f"(max_class_drop_pt={g['max_class_drop_pt']:g}, rule '{g['rule']}', alpha "
            f"{g['alpha']:g}) blocks:\n\n"
            f"| simulated int8 model | blocked |\n|---|---:|\n"
            f"| no harm (each discordant example either way, p = 1/2) | {rate['no_harm']:.2%} |\n"
            f"| every class {g['max_class_drop_pt']:g} pt worse (at the tolerance) | "
            f"{rate['at_tolerance']:.2%} |\n" +
            "".join(f"| class {r['harmed_class']} (the most discordant) {h:g} pt worse, others "
                    f"unharmed | {rate[f'one_class_harmed_{h:g}pt']:.2%} |\n"
                    for h in r["harm_pt"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-root", default="runs/fashion_mnist",
                   help="a finished `tfx_qat.pipelines.cli run` output root (its summary.json)")
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--out", default=RESULTS)
    a = p.parse_args(argv)
    with open(os.path.join(a.run_root, "summary.json")) as f:
        evaluation = json.load(f)["artifacts"]["evaluation"]
    with open(os.path.join(evaluation, "metrics.json")) as f:
        result = measure(json.load(f), f"{a.run_root} (make run)", a.trials)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(to_markdown(result))
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
