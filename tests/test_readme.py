"""The README's measured numbers are rendered from the results files commands write
(benchmarks/readme.py): a block that differs from its file fails here."""
import json
import os
import re

from benchmarks import readme
from benchmarks.bench import to_markdown


def _readme():
    with open(readme.README) as f:
        return f.read()


def test_every_results_block_matches_what_its_file_renders():
    text = _readme()
    names = [m.group("name") for m in readme.BLOCK.finditer(text)]
    assert sorted(set(names)) == sorted(readme.RENDERERS), names
    assert readme.render(text) == text, "README.md differs from its results: run `make readme`"


def test_a_number_edited_by_hand_is_caught():
    text = _readme()
    block = next(m for m in readme.BLOCK.finditer(text) if m.group("name") == "bench")
    body = block.group("body")
    digit = re.search(r"\| (\d)", body)  # first number in a table cell
    edited = body[:digit.start(1)] + str((int(digit.group(1)) + 1) % 10) + body[digit.end(1):]
    tampered = text.replace(body, edited)
    assert tampered != text and readme.render(tampered) != tampered


def test_bench_markdown_is_the_json_rendered():
    with open(os.path.join(readme.REPO, readme.BENCH)) as f:
        results = json.load(f)
    with open(os.path.join(readme.REPO, "benchmarks", "results", "bench_results.md")) as f:
        assert f.read() == to_markdown(results)


def test_guard_block_is_its_results_file_and_the_guard_is_the_products():
    """The guard's false-block table renders benchmarks/results/bench_guard_results.json, whose
    observed verdict is what quant_lib.paired.guard says on the recorded per-class counts."""
    from benchmarks import bench_guard
    from quant_lib import paired
    with open(bench_guard.RESULTS) as f:
        r = json.load(f)
    assert bench_guard.to_markdown(r) in _readme()
    comps = {f"class {c['class']}": paired.PairedAccuracy(c["n"], c["float_only"], c["int8_only"])
             for c in r["classes"]}
    assert paired.guard(comps, r["guard"]["max_class_drop_pt"], r["guard"]["rule"],
                        r["guard"]["alpha"]) == r["observed_blocked"]
    assert r["block_rate"]["no_harm"] <= r["guard"]["alpha"]
