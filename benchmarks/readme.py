"""The README's measured numbers, rendered from the results files the commands write.

Every block between ``<!-- results:NAME -->`` and ``<!-- /results -->`` in README.md and docs/*.md
is generated from a results file in benchmarks/results/ (``make bench``, ``make bench-scale``,
``make bench-guard``, ``make image-check``); ``tests/test_readme.py`` fails when a block differs from what its file
renders. After a bench: ``make readme`` (``python -m benchmarks.readme``) rewrites them.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Callable, Dict, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS = os.path.join(REPO, "docs")


def documents() -> list:
    """README.md and docs/*.md: every file whose results blocks are rendered and checked."""
    return [README] + sorted(os.path.join(DOCS, f) for f in os.listdir(DOCS) if f.endswith(".md"))
BENCH = "benchmarks/results/bench_results.json"
SCALE = "benchmarks/results/bench_scale_results.json"
GUARD = "benchmarks/results/bench_guard_results.json"
IMAGE = "benchmarks/results/image_results.json"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def _relative(s: Dict[str, Any], root: str) -> Dict[str, Any]:
    """The summary with the measuring machine's output root shown as ``root`` (the README's
    layout), so no path of the machine that ran the bench appears in a document."""
    was = s.get("output_root") or ""

    def fix(v):
        if isinstance(v, str) and was and v.startswith(was):
            return root + v[len(was):]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return [fix(x) for x in v] if isinstance(v, list) else v
    return fix(s)


def run_summary(r: Dict[str, Any]) -> str:
    """The summary ``make run`` prints, from the same command run inside ``make bench``."""
    from tfx_qat.pipelines.summary import format_summary
    s = _relative(r["overhead"]["pipeline"]["summary"], "runs/fashion_mnist")
    when = r.get("rerun", {}).get("overhead", r)  # the section's own date and machine
    return (f"```\n{format_summary(s)}\n```\n\nThe `tfx_qat.pipelines.cli run` process inside `make bench` "
            f"({when['date']}, {when.get('machine', r['machine'])}: the full 60,000 / 10,000 Fashion-MNIST splits, "
            f"{r['overhead']['epochs']['float']} float epochs, {r['overhead']['epochs']['qat']} QAT "
            f"epoch, fresh output root, no cache): {r['overhead']['pipeline']['seconds']:.0f} s "
            "wall time including data ingestion.\n")


def mobilenet_v2(r: Dict[str, Any]) -> str:
    m = r["mobilenet_v2"]
    std = m["standard_224"]
    total = m["edgetpu_predicted_on_tpu"] + m["edgetpu_predicted_on_cpu"]
    return (f"On a MobileNetV2-shaped model (`tf_keras.applications.MobileNetV2(input_shape=(96, 96, "
            f"3), weights=None, classes=10)`, QAT with the default plan, converted with 32 "
            f"calibration images) the analyzer predicts **{m['edgetpu_predicted_on_tpu']} of "
            f"{total} ops on the Edge TPU**; the plan is {m['layers']['quantized']} layers "
            f"quantized, {m['layers']['folded']} BN folded, {m['layers']['float']} float, and the "
            f"int8 TFLite is {m['int8_bytes']:,} vs {m['float_bytes']:,} bytes float "
            f"({m['size_ratio']:.2f}x). At the standard shape (224x224x3, 1,000 classes) the same "
            f"converter gives {std['int8_bytes']:,} vs {std['float_bytes']:,} bytes "
            f"({std['size_ratio']:.2f}x). (`make bench`, {r['date']}.)\n")


def bench_summary(r: Dict[str, Any]) -> str:
    """The README's short table: Fashion-MNIST float vs PTQ and QAT int8 (docs/benchmarks.md)."""
    fm = r["fashion_mnist"]["models"]
    rows = [("float", "float TFLite (fair reference)"), ("ptq_int8", "PTQ int8"),
            ("qat_int8", "QAT int8 (tfx-qat)")]
    sec = r["fashion_mnist"]
    tf_ = sec.get("tf_runtime")
    out = ["| Fashion-MNIST, full splits | top-1 | size (bytes) | latency (ms), "
           f"{sec.get('runtime', r['latency_runtime'])} |" + (f" latency (ms), {tf_} |" if tf_ else ""),
           "|---|---|---|---|" + ("---|" if tf_ else "")]
    out += [f"| {label} | {100 * fm[k]['accuracy']:.2f}% | {fm[k]['bytes']:,} | "
            f"{fm[k]['latency_ms']:.4f} |" + (f" {fm[k]['tf_latency_ms']:.4f} |" if tf_ else "")
            for k, label in rows]
    when = r.get("rerun", {}).get("fashion_mnist", r)
    return ("\n".join(out) + f"\n\n`make bench`, {when['date']}, {when.get('machine', r['machine'])};"
            " latency: XNNPACK, 1 thread, batch 1, `invoke()` alone. All sections: "
            "[docs/benchmarks.md](docs/benchmarks.md).\n")


def _bench_table(r: Dict[str, Any]) -> str:
    from benchmarks.bench import to_markdown
    return to_markdown(r)


def _latency_table(r: Dict[str, Any]) -> str:
    from benchmarks.bench import latency_markdown
    return latency_markdown(r)


def _experiments_store(r: Dict[str, Any]) -> str:
    from benchmarks.bench_experiments import markdown
    return markdown(r)


def _experiments_example(r: Dict[str, Any]) -> str:
    from benchmarks.bench_experiments import example_markdown
    return example_markdown(r)


def _scale_table(r: Dict[str, Any]) -> str:
    from benchmarks.bench_scale import to_markdown
    return (to_markdown(r) +
            "\n![time and peak memory vs examples](../benchmarks/results/bench_scale.png)\n")


def _guard_table(r: Dict[str, Any]) -> str:
    from benchmarks.bench_guard import to_markdown
    return to_markdown(r)


def _image(r: Dict[str, Any]) -> str:
    from benchmarks.image_results import to_markdown
    return to_markdown(r)


def guard_rate(r: Dict[str, Any]) -> str:
    """The README's sentence on the class guard: its default and how often it blocks a model
    with no harm (``make bench-guard``; the full table is in docs/components.md)."""
    g, rate = r["guard"], r["block_rate"]
    return (f"Default guard: `max_class_drop_pt={g['max_class_drop_pt']:g}`, rule "
            f"`'{g['rule']}'`, alpha {g['alpha']:g} over all classes. On `make run`'s own "
            f"per-class evidence ({r['trials']:,} simulated int8 models per case, `make "
            f"bench-guard`) it blocked **{rate['no_harm']:.2%}** of models with no harm, "
            f"{rate['at_tolerance']:.2%} with every class exactly {g['max_class_drop_pt']:g} pt "
            f"worse, and " + ", ".join(f"{rate[f'one_class_harmed_{h:g}pt']:.1%} with one class "
                                       f"{h:g} pt worse" for h in r["harm_pt"]) + ".\n")


RENDERERS: Dict[str, Tuple[str, Callable[[Dict[str, Any]], str]]] = {
    "run-summary": (BENCH, run_summary),
    "bench-summary": (BENCH, bench_summary),
    "mobilenet-v2": (BENCH, mobilenet_v2),
    "bench": (BENCH, _bench_table),
    "guard": (GUARD, _guard_table),
    "guard-rate": (GUARD, guard_rate),
    "latency-224": (BENCH, _latency_table),
    "experiments-store": (BENCH, _experiments_store),
    "experiments-example": (BENCH, _experiments_example),
    "scale": (SCALE, _scale_table),
    "image": (IMAGE, _image),
}


def render(text: str) -> str:
    """``text`` with every results block re-rendered from its file."""
    cache: Dict[str, Dict[str, Any]] = {}

    def one(m):
        source, fn = RENDERERS[m.group("name")]
        if source not in cache:
            with open(os.path.join(REPO, source)) as f:
                cache[source] = json.load(f)
        return m.group(1) + fn(cache[source]) + m.group(4)

    return BLOCK.sub(one, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a document is not up to date")
    args = p.parse_args(argv)
    stale = []
    for path in documents():
        with open(path) as f:
            text = f.read()
        new = render(text)
        if new != text:
            stale.append(path)
            if not args.check:
                with open(path, "w") as f:
                    f.write(new)
    if args.check:
        print("\n".join(f"{p} differs from its results" for p in stale) or "up to date")
        return int(bool(stale))
    print(f"rendered results blocks into {len(documents())} documents ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
