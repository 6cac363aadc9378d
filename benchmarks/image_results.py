"""The container image check's results file (``make image-check``, scripts/image_check.sh).

Reads what the script left in its work folder (the CLI's help, the KFP entrypoint import, the
site-packages sizes, the digits pipeline run inside the container), fails unless the smoke run
ended in a blessed push whose bytes hash to the sha256 QuantEvaluator recorded, and writes
benchmarks/results/image_results.json, which ``benchmarks.readme`` renders into the README.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys

CONTAINER_OUT = "/out"  # where the script mounts the smoke run's folder inside the container


def _host_path(work: str, container_path: str) -> str:
    return os.path.join(work, "smoke", os.path.relpath(container_path, CONTAINER_OUT))


def smoke(work: str) -> dict:
    """The digits run inside the container: blessed, pushed, pushed bytes = evaluated bytes."""
    with open(os.path.join(work, "smoke", "digits", "summary.json")) as f:
        s = json.load(f)
    if not (s["blessed"] and s["pushed_path"]):
        raise SystemExit(f"image check: the smoke run was not blessed and pushed: {s['blessing_reasons']}")
    from tfx_qat.pipelines import lineage
    [lin] = lineage.pushed_model_lineage(os.path.join(work, "smoke", "digits", "metadata.sqlite"))
    evaluated = lin["evaluation"]["evaluated_int8_sha256"]
    with open(_host_path(work, s["pushed_path"]), "rb") as f:
        pushed = hashlib.sha256(f.read()).hexdigest()
    if pushed != evaluated:
        raise SystemExit(f"image check: pushed sha256 {pushed} != evaluated {evaluated}")
    return {"blessed": True, "pushed_sha256_matches_evaluated": True,
            "float_accuracy": s["float_accuracy"], "int8_accuracy": s["int8_accuracy"],
            "eval_examples": s["eval_examples"], "pushed_path": s["pushed_path"]}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{os.cpu_count()}-core {model}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--work", "--out", "--image", "--base", "--standin", "--podman"):
        p.add_argument(flag, required=True)
    for flag in ("--base-bytes", "--image-bytes", "--build-seconds", "--smoke-seconds"):
        p.add_argument(flag, type=int, required=True)
    a = p.parse_args(argv)
    with open(os.path.join(a.work, "help.txt")) as f:
        if "usage:" not in f.read():
            raise SystemExit("image check: `tfx-qat --help` printed no usage")
    with open(os.path.join(a.work, "entrypoint.txt")) as f:
        entrypoint = f.read().strip()
    with open(os.path.join(a.work, "sizes.json")) as f:
        sizes = json.load(f)
    result = {
        "date": datetime.date.today().isoformat(), "machine": _cpu(), "engine": a.podman,
        "image": a.image, "base": a.base, "base_is_standin": a.standin == "true",
        "base_bytes": a.base_bytes, "image_bytes": a.image_bytes,
        "build_seconds": a.build_seconds, "site_packages_bytes": sizes["site_packages_bytes"],
        "largest_packages": sizes["largest"], "kfp_entrypoint": entrypoint,
        "smoke": {**smoke(a.work), "seconds": a.smoke_seconds,
                  "command": "tfx-qat run --dataset digits (--network=none)"},
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"image check: {a.image_bytes / 1e9:.2f} GB, built in {a.build_seconds} s, smoke run "
          f"blessed and pushed in {a.smoke_seconds} s -> {a.out}")
    return 0


def to_markdown(r: dict) -> str:
    """The README's sentences on the image (rendered by benchmarks.readme)."""
    base = (f"a local stand-in for `{r['base']}` (Debian 12 debootstrapped + CPython 3.10, no "
            "compiler; the official image cannot be pulled there)" if r["base_is_standin"]
            else f"`{r['base']}`")
    largest = ", ".join(f"{n} {b / 1e9:.2f} GB" if b >= 1e8 else f"{n} {b / 1e6:.0f} MB"
                        for n, b in r["largest_packages"][:4])
    sm = r["smoke"]
    return (f"`make image-check` ({r['date']}, {r['machine']}, {r['engine']}): built on {base} "
            f"in {r['build_seconds'] / 60:.1f} min without cache; the image is "
            f"**{r['image_bytes'] / 1e9:.2f} GB** (base {r['base_bytes'] / 1e6:.0f} MB; "
            f"site-packages {r['site_packages_bytes'] / 1e9:.2f} GB, largest: {largest}). Inside "
            f"it, with no network: `tfx-qat --help`, the import of the KFP step command "
            f"(`{r['kfp_entrypoint'].split()[0]}` around TFX's v2 entrypoint), and "
            f"`{sm['command']}` to a blessed push whose bytes hash to the evaluated sha256 "
            f"({sm['seconds']} s; int8 {100 * sm['int8_accuracy']:.2f} % on "
            f"{sm['eval_examples']} digits).\n")


if __name__ == "__main__":
    sys.exit(main())
