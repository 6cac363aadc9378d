"""The README's (and docs/'s) measured numbers are rendered from the results files commands write
(benchmarks/readme.py): a block that differs from its file fails here. The README stays a
newcomer's page: short, with a table of contents, and every command it shows is one the CLI or
the Makefile accepts."""
import json
import os
import re

from benchmarks import readme
from benchmarks.bench import to_markdown


def _read(path):
    with open(path) as f:
        return f.read()


def _readme():
    return _read(readme.README)


def _all_docs():
    return "".join(_read(p) for p in readme.documents())


def test_every_results_block_matches_what_its_file_renders():
    names = []
    for path in readme.documents():
        text = _read(path)
        names += [m.group("name") for m in readme.BLOCK.finditer(text)]
        assert readme.render(text) == text, f"{path} differs from its results: run `make readme`"
    assert sorted(names) == sorted(readme.RENDERERS), names  # each block once, none missing


def test_readme_is_short_with_contents_and_its_links_exist():
    text = _readme()
    assert len(text.splitlines()) <= 500 and "**Contents:**" in text
    for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
        heads = [re.sub(r"[^\w\s-]", "", h).strip().lower().replace(" ", "-")
                 for h in re.findall(r"^## (.+)$", text, re.M)]
        assert anchor in heads, anchor
    for target in re.findall(r"\]\((docs/[\w.]+)", text):
        assert os.path.exists(os.path.join(readme.REPO, target)), target


def test_every_command_the_readme_shows_is_accepted():
    """Each `python -m tfx_qat.pipelines.cli ...` line parses with the CLI's own parser; each `make X`
    names a Makefile target."""
    from tfx_qat.pipelines import cli
    text = _readme()
    commands = re.findall(r"python -m tfx_qat\.pipelines\.cli ([^\n`]+)", text)
    assert len(commands) >= 4, commands
    for line in commands:
        argv = [a for a in line.split() if not a.startswith("[")]
        if argv[-1] == "--help" or argv == ["run"]:
            continue
        cli.build_parser().parse_args(argv)  # argparse exits (SystemExit) on a refused command
    targets = set(re.findall(r"^([\w-]+):", _read(os.path.join(readme.REPO, "Makefile")), re.M))
    used = set(re.findall(r"`?make ([a-z][\w-]*)", text))
    assert used and used <= targets, used - targets


def test_a_number_edited_by_hand_is_caught():
    text = _all_docs()
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
    observed verdict is what tfx_qat.quant_lib.evaluation.paired.guard says on the recorded per-class counts."""
    from benchmarks import bench_guard
    from tfx_qat.quant_lib.evaluation import paired
    with open(bench_guard.RESULTS) as f:
        r = json.load(f)
    assert bench_guard.to_markdown(r) in _all_docs()
    comps = {f"class {c['class']}": paired.PairedAccuracy(c["n"], c["float_only"], c["int8_only"])
             for c in r["classes"]}
    assert paired.guard(comps, r["guard"]["max_class_drop_pt"], r["guard"]["rule"],
                        r["guard"]["alpha"]) == r["observed_blocked"]
    assert r["block_rate"]["no_harm"] <= r["guard"]["alpha"]


def test_rendered_blocks_show_no_path_of_the_machine_that_measured():
    for path in readme.documents():
        for m in readme.BLOCK.finditer(_read(path)):
            body = m.group("body")
            assert not re.search(r"(?<![\w.])/(work|root|home|tmp|usr/local)/", body), \
                (path, m.group("name"), re.findall(r"/(?:work|root|home|tmp)/\S+", body)[:3])
