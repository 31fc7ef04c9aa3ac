"""The companion end to end: every notebook through the runner under `smoke`, the book built from those outputs
with warnings as errors, every table and figure in the HTML, figures loaded in a real browser, and re-runs."""

import functools
import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gigassl.book.runner import load_plan, run_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the book's sources, run under smoke and built; returns its root."""
    root = tmp_path_factory.mktemp("companion")
    for item in ("notebooks", "book", "studies"):  # studies/: the mechanisms page's design file
        shutil.copytree(ROOT / item, root / item, ignore=shutil.ignore_patterns("executed", "*.ipynb"))
    for item in ("experiments.yml", "_config.yml", "_toc.yml"):
        shutil.copy(ROOT / item, root / item)
    records = run_plan("smoke", root, progress=False)
    assert records and not any(r["skipped"] for r in records)
    build = subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", str(root), "-W", "-n",
                            "--keep-going"], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return root


def test_every_execution_of_the_plan_ran(built):
    plan = load_plan(built / "experiments.yml", "smoke")
    executed = {p.stem for p in (built / "book" / "executed").rglob("*.ipynb")}
    assert {e.name for e in plan} <= executed
    assert not list((built / "book" / "executed").rglob("*.failed.ipynb"))


def test_pages_have_no_warnings_or_stderr(built):
    """A reader's page shows no library warning, log line or progress bar (stderr) and no papermill injected cell."""
    import nbformat

    for path in sorted((built / "book" / "executed").rglob("*.ipynb")):
        page = nbformat.read(str(path), as_version=4)
        for cell in page.cells:
            for output in cell.get("outputs", []):
                assert not (output.get("output_type") == "stream" and output.get("name") == "stderr"), (
                    f"{path.name}: stderr in a page: {output.get('text', '')[:300]}")
            tags = cell.get("metadata", {}).get("tags", [])
            assert "injected-parameters" not in tags or "remove-cell" in tags


def test_html_holds_every_figure_and_table(built):
    html = built / "_build" / "html"
    images = {hashlib.sha256(p.read_bytes()).hexdigest() for p in html.rglob("*.png")}
    figures = sorted((built / "figures").glob("*.png"))
    assert len(figures) >= 25
    missing = [p.name for p in figures if hashlib.sha256(p.read_bytes()).hexdigest() not in images]
    assert not missing, f"figures absent from the HTML: {missing}"
    pages = "\n".join(p.read_text(errors="ignore") for p in html.rglob("*.html"))
    tables = sorted((built / "figures").glob("*.csv"))
    assert len(tables) >= 20
    for table in tables:
        assert f">{table.stem}<" in pages, f"table {table.stem} absent from the HTML"  # the table's caption
        for column in pd.read_csv(table).columns:
            assert f">{column}</th>" in pages, f"column {column} of {table.stem} absent from the HTML"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(directory: Path):
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# console messages of the book's theme, not of its pages: jupyter-book 1.0 writes sphinx-thebe's configuration script
# twice in every page (a SyntaxError on the second), pydata-sphinx-theme reports a first visit's empty theme mode as
# an error, and the browser asks for a favicon the book has none of
THEME_MESSAGES = ("Identifier 'THEBE_JS_URL' has already been declared", "Got invalid theme mode", "favicon.ico")


def test_figures_load_in_headless_chromium(built, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    server = _serve(built / "_build" / "html")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    local = f"http://127.0.0.1:{server.server_port}/"
    try:
        for page in ("book/executed/results.html", "book/executed/ablation_views.html", "book/method.html",
                     "book/executed/cohort.html", "book/executed/slide_embeddings.html",
                     "book/executed/linear_probe.html", "book/executed/tiny_datasets.html"):
            driver.get(local + page)
            driver.execute_script("return document.readyState")
            widths = driver.execute_script(
                "return Promise.all(Array.from(document.images).map(i => i.decode().then(() => i.naturalWidth,"
                " () => 0)));")
            assert widths, f"{page} has no image"
            assert all(w > 0 for w in widths), f"{page}: images not loaded: {widths}"
            fetched = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
            assert all(url.startswith(local) or url.startswith("data:") for url in fetched), \
                f"{page} loads from outside the book: {[u for u in fetched if not u.startswith(local)]}"
            errors = [e["message"] for e in driver.get_log("browser")
                      if e["level"] == "SEVERE" and not any(known in e["message"] for known in THEME_MESSAGES)]
            assert not errors, f"{page}: console errors {errors}"
            if page.endswith("slide_embeddings.html"):  # the interactive map rendered: bokeh built its figure
                drawn = driver.execute_script(
                    "return new Promise(done => setTimeout(() => done([typeof Bokeh !== 'undefined' && "
                    "Bokeh.documents.length > 0, ...Array.from(document.querySelectorAll('.gigassl-interactive-map'))"
                    ".map(m => m.querySelector('.bk-Figure') !== null && m.querySelector('.bk-Figure').shadowRoot "
                    "!== null)]), 3000));")
                assert len(drawn) == 2 and all(drawn), f"the interactive map did not render: {drawn}"
    finally:
        driver.quit()
        server.shutdown()


def test_every_figure_is_listed_in_figures_readme_and_the_single_pages_are_committed(built):
    """figures/README.md names what writes every file a run makes; the committed demo figures are those of the
    current notebooks: every file of a page that runs once (not the per-bank and per-training-run files, whose
    names follow the profile's plan) is committed."""
    from .test_project import committed_figures, figure_patterns, listed

    patterns = figure_patterns()
    made = sorted(p.name for p in (built / "figures").iterdir())
    assert not [n for n in made if not listed(n, patterns)], "figures absent from figures/README.md"
    committed = {p.name for p in committed_figures()}
    single = [n for n in made if not n.startswith(("bank_", "ssl_"))]
    missing = [n for n in single if n not in committed]
    assert not missing, f"figures written by the notebooks but not committed (run make book and commit figures/): {missing}"


def test_rerun_skips_everything_and_a_changed_parameter_reruns_its_dependents(built):
    assert all(r["skipped"] for r in run_plan("smoke", built, progress=False))
    plan = yaml.safe_load((built / "experiments.yml").read_text())
    entry = next(e for e in plan["executions"] if e["name"] == "ablation_views")
    entry["parameters"] = {"view_counts": [1, 3]}
    (built / "experiments.yml").write_text(yaml.safe_dump(plan, sort_keys=False))
    ran = [r["name"] for r in run_plan("smoke", built, progress=False) if not r["skipped"]]
    assert ran == ["ablation_views", "results", "resources"]
    assert sorted(pd.read_csv(built / "figures" / "fig3b_views.csv")["views"].unique()) == [1, 3]
