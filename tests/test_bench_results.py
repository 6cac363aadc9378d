"""The README's benchmark table is the one `make bench` wrote from its JSON (no hand-edited numbers)."""
import json
import os

from pipelines.bench import to_markdown

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_table_matches_the_results_json():
    with open(os.path.join(REPO, "pipelines", "bench_results.json")) as f:
        results = json.load(f)
    with open(os.path.join(REPO, "pipelines", "bench_results.md")) as f:
        table = f.read()
    assert table == to_markdown(results)
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert table.strip() in readme
