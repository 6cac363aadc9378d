"""The README's measured numbers are rendered from the results files commands write
(pipelines/readme.py): a block that differs from its file fails here."""
import json
import os
import re

from pipelines import readme
from pipelines.bench import to_markdown


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
    with open(os.path.join(readme.REPO, "pipelines", "bench_results.md")) as f:
        assert f.read() == to_markdown(results)
