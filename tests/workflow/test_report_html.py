"""`snakemake --report` on the end-to-end demo run, opened in headless Chromium: the report's JavaScript
app runs, and every table and image it embeds renders with the run's data.

Chromium is driven through chromedriver's W3C WebDriver HTTP API (plain urllib, no extra package).
Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the browser
test is skipped with the reason in pytest's summary, so ``pytest`` passes on a fresh machine; CI sets
DDPMSEG_REQUIRE_BROWSER=1, which makes their absence a failure instead.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import snakemake
from PIL import Image

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver key of an element reference
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1600, 1200)
# Set to 1 (CI does) to fail instead of skipping where Chromium or chromedriver is missing.
REQUIRE_BROWSER = "DDPMSEG_REQUIRE_BROWSER"

pytestmark = pytest.mark.workflow


def find_browser() -> tuple[str, str]:
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        reason = ("needs Chromium and its WebDriver on PATH (found browser: "
                  f"{browser}, chromedriver: {driver}); on Debian/Ubuntu: "
                  "apt-get install -y --no-install-recommends chromium chromium-driver")
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{reason} ({REQUIRE_BROWSER}=1)", pytrace=False)
        pytest.skip(reason)
    return browser, driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebDriver:
    """The few W3C WebDriver commands this test needs, against a chromedriver process."""

    def __init__(self, browser: str, driver: str, profile: Path, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [driver, f"--port={self.port}", f"--log-path={log}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.session = None
        self.wait_for(lambda: self.request("GET", "/status")["ready"], 30, "chromedriver to start")
        args = [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--user-data-dir={profile}",
        ]
        capabilities = {"browserName": "chrome", "goog:chromeOptions": {"binary": browser, "args": args}}
        self.session = self.request("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["sessionId"]

    def request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read().decode()[:2000]}") from None

    def command(self, method: str, path: str, body: dict | None = None):
        return self.request(method, f"/session/{self.session}{path}", body)

    def wait_for(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                value = condition()
            except (OSError, AssertionError) as error:  # not up yet, or a stale frame
                value, last = None, error
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")

    def open(self, url: str) -> None:
        self.command("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def element(self, css: str) -> dict:
        return self.command("POST", "/element", {"using": "css selector", "value": css})

    def element_png(self, element: dict) -> Image.Image:
        data = self.command("GET", f"/element/{element[ELEMENT]}/screenshot")
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def window_png(self) -> Image.Image:
        return Image.open(io.BytesIO(base64.b64decode(self.command("GET", "/screenshot")))).convert("RGB")

    def enter_frame(self, element: dict) -> None:
        self.command("POST", "/frame", {"id": element})

    def leave_frame(self) -> None:
        self.command("POST", "/frame/parent", {})

    def close(self) -> None:
        try:
            if self.session:
                self.command("DELETE", "")
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def colours(image: Image.Image) -> int:
    """Number of distinct RGB colours."""
    pixels = np.asarray(image).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def cell_texts(driver: WebDriver, selector: str) -> list[str]:
    return driver.run(f"return Array.from(document.querySelectorAll('{selector}')).map(c => c.textContent.trim());")


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory):
    """(workdir, config, report path): ``snakemake --report`` on the demo run."""
    workdir, config = demo_run
    path = tmp_path_factory.mktemp("report") / "report.html"
    started = time.monotonic()
    result = snakemake(workdir, config, "--report", str(path), timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert path.is_file(), result.stderr[-2000:]
    print(f"snakemake --report: {time.monotonic() - started:.1f} s, {path.stat().st_size / 1e6:.1f} MB")
    return workdir, config, path


@pytest.fixture(scope="session")
def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or a skip; session-scoped so that it is settled before the demo run."""
    return find_browser()


@pytest.fixture(scope="module")
def browser(browser_paths, tmp_path_factory):
    chromium, chromedriver = browser_paths
    folder = tmp_path_factory.mktemp("chromium")
    driver = WebDriver(chromium, chromedriver, folder / "profile", folder / "chromedriver.log")
    yield driver
    driver.close()


def expected_results(config: dict) -> dict[str, dict]:
    """Report items (path -> labels) that make_report_figures should have marked."""
    datasets, variants = list(config["datasets"]), list(config["variants"])
    items = {
        "results/report/tables/miou.html": {"table": "mIoU per variant and dataset"},
        "results/report/tables/per_class_iou.html": {"table": "IoU per class"},
        "results/report/tables/resources.html": {"table": "wall time and peak memory per rule"},
    }
    for d in datasets:
        items[f"results/report/per_class_iou/{d}.png"] = {"dataset": d}
        for v in variants:
            items[f"results/report/training_curves/{d}/{v}.png"] = {"dataset": d, "variant": v}
            for rank in ("best", "worst"):
                items[f"results/report/examples/{d}/{v}/{rank}.png"] = {"dataset": d, "variant": v, "example": rank}
    trained = {config["datasets"][d]["ddpm"] for d in datasets if config["ddpms"][config["datasets"][d]["ddpm"]]["source"] == "train"}
    for name in sorted(trained):
        items[f"results/ddpm/{name}/samples.png"] = {"ddpm": name}
    for name, entry in config.get("apply", {}).items():  # apply.smk: the first images of each entry
        for image in sorted(Path(entry["images"]).iterdir())[:3]:
            items[f"results/applied/{name}/examples/{image.stem}.png"] = {"entry": name, "image": image.stem}
    return items


def show_result(browser, result: str, content: str) -> None:
    """Show one result in the report's app, as its result buttons do."""
    browser.run("const [p, c] = arguments; app.setView({content: c, contentPath: results[p].data_uri, resultPath: p});",
                result, content)


def test_report_is_self_contained_and_lists_every_item(report) -> None:
    _, config, path = report
    html = path.read_text()
    start = html.index("var results = ", html.index('<script id="results">')) + len("var results = ")
    results, _ = json.JSONDecoder().raw_decode(html[start:])
    assert {p: r["labels"] for p, r in results.items()} == expected_results(config)
    for entry in results.values():
        assert entry["data_uri"].startswith(f"data:{entry['mime_type']};")
        assert entry["caption"].strip(), entry["name"]


def test_report_renders_tables_and_images_in_chromium(browser, report, tmp_path) -> None:
    workdir, config, path = report
    browser.open(path.resolve().as_uri())
    # the React app has rendered when the workflow description (workflow/report/workflow.rst) is shown
    browser.wait_for(lambda: "label-efficient segmentation with DDPM" in browser.run("return document.body.innerText;"),
                     60, "the report app to show the workflow description")
    shot = browser.window_png()
    shot.save(tmp_path / "start.png")
    assert colours(shot) > 50, "the report's start page looks blank"
    front_page = browser.run("return document.body.innerText;")
    assert "Loading Snakemake Report" not in front_page
    fetched = browser.run("return performance.getEntriesByType('resource').map(e => e.name);")
    assert not [url for url in fetched if not url.startswith("data:")], f"the report fetches {fetched}"

    # a category link of the workflow description, as a reader clicks it
    browser.run("document.querySelector(\"a[href*=\\\"showCategory('Tables')\\\"]\").click();")
    browser.wait_for(lambda: "mIoU per variant and dataset" in browser.run("return document.body.innerText;"),
                     30, "the Tables category to list its tables")

    results = browser.run("return Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.mime_type]));")
    assert set(results) == set(expected_results(config))
    categories = browser.run("return Object.keys(categories);")
    assert set(categories) == {"Tables", "Resources", "IoU per class", "Training curves", "Example predictions", "DDPM samples", "Applied to new images"}
    assert [category for category in categories if category not in front_page] == []  # the description names each

    # every image: shown by the app (as its result buttons do), decoded at its full size, not blank
    for result, mime in sorted(results.items()):
        if mime != "image/png":
            continue
        show_result(browser, result, "img")
        size = browser.wait_for(
            lambda result=result: browser.run(
                "const img = Array.from(document.images).find(i => i.src === results[arguments[0]].data_uri);"
                "return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null;",
                result,
            ),
            30, f"{result} to be shown",
        )
        with Image.open(workdir / result) as source:
            assert tuple(size) == source.size, result
        element = browser.element("#app img[src^='data:image/png']")
        shown = browser.element_png(element)
        shown.save(tmp_path / (result.replace("/", "_")))
        assert shown.width > 100 and shown.height > 100, result
        assert colours(shown) >= 20, f"{result} renders (nearly) blank"

    # every table: shown in the app's frame, with the run's numbers in its cells
    tables = workdir / "results" / "tables"
    summary = pd.read_csv(tables / "miou.csv")
    per_class = pd.read_csv(tables / "per_class.csv")
    benchmarks = sorted((workdir / "results" / "benchmarks").rglob("*.tsv"))
    jobs = pd.Series([p.relative_to(workdir / "results" / "benchmarks").parts[0] for p in benchmarks]).value_counts()
    expected_cells = {
        "results/report/tables/miou.html": list(config["variants"]) + [f"{m:.2f} ± {s:.2f}" for m, s in zip(summary["mean"], summary["std"])],
        "results/report/tables/per_class_iou.html": list(config["datasets"]) + sorted(set(per_class["class_name"])),
        "results/report/tables/resources.html": [str(x) for pair in jobs.items() for x in pair],
    }
    for result, mime in sorted(results.items()):
        if mime != "text/html":
            continue
        show_result(browser, result, "html")
        frame = browser.wait_for(
            lambda result=result: browser.run("const f = document.querySelector('#app iframe');"
                                "return f && f.src === results[arguments[0]].data_uri;", result)
            and browser.element("#app iframe"),
            30, f"{result} to be shown in a frame",
        )
        browser.enter_frame(frame)
        try:
            cells = browser.wait_for(lambda: cell_texts(browser, "td"), 30, f"the table cells of {result}")
        finally:
            browser.leave_frame()
        for text in expected_cells[result]:
            assert any(cell == text or cell.startswith(text + " ") for cell in cells), f"{result}: no cell {text!r} in {cells}"
        shown = browser.element_png(frame)
        shown.save(tmp_path / (result.replace("/", "_") + ".png"))
        assert colours(shown) >= 20, f"{result} renders (nearly) blank"


def test_report_figures_are_rule_outputs(report) -> None:
    workdir, config, _ = report
    resources = pd.read_csv(workdir / "results/report/tables/resources.csv")
    assert list(resources["rule"]) == ["train_ddpm", "extract_features", "train_members", "predict_test_shard", "label_images"]
    datasets, variants, seeds = len(config["datasets"]), len(config["variants"]), len(config["seeds"])
    jobs = dict(zip(resources["rule"], resources["jobs"]))
    assert jobs["train_members"] == datasets * variants * seeds * config["ensemble_size"]
    assert jobs["predict_test_shard"] == datasets * seeds  # one test shard per dataset and noise seed
    assert (resources["max_rss_mb"] > 0).all() and (resources["total_s"] >= resources["max_s"]).all()
