"""TensorBoard as a person sees it: a sweep trained and summarised here with the real pipeline (Trainer per trial,
summarize_sweep), ``tensorboard --logdir SWEEP/tb`` on a loopback port, its Scalars, Images and HParams pages opened in
headless Chromium. Each trial's val curves are drawn, the best trial's panel is shown with its pixels, the hparams
table lists every trial's parameters and scores. Screenshots are kept in a folder the test prints.

Needs Debian's chromium and chromium-driver (tests/run.sh installs them where it runs as root with apt-get) and
selenium (dev extra); skips and says why without them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import synthetic_shards
from PIL import Image

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.sweeps.summary import PANEL_TAG
from salnet.train.loop import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")]
CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
TRIALS = {"t0-lr3e-4": 3e-4, "t1-lr3e-3": 3e-3}
EPOCHS = 3
SPLIT = "test"
# Flags Chromium needs on these machines: no sandbox as root, no GPU, and no background connections (the closed
# network refuses them, many at a time).
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=2800,1300")
DEEP = "function* deep(n) { yield n; if (n.shadowRoot) yield* deep(n.shadowRoot); " \
       "for (const c of n.children || []) yield* deep(c); }\n"


def artefact_dir(request) -> Path:
    """Where the screenshots go: $SALNET_TEST_ARTIFACTS/tensorboard (default under the temp folder), printed."""
    root = Path(os.environ.get("SALNET_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "salnet-test-artifacts"))
    folder = root / "tensorboard"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[tensorboard browser test] screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def webdriver_module():
    if not CHROMIUM or not DRIVER:
        pytest.skip("no chromium/chromedriver: tests/run.sh installs Debian's chromium and chromium-driver when it "
                    "runs as root with apt-get (apt-get install chromium chromium-driver)")
    return pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, webdriver_module):
    """(sweep folder, summarize_sweep's result): two trials of EPOCHS epochs, trained and summarised here."""
    from salnet.sweeps.summary import summarize_sweep

    root = tmp_path_factory.mktemp("board")
    shards = synthetic_shards(root, {"train": 8, "val": 4, SPLIT: 4}, (32, 48), 0.05)
    folder = root / "sweep"
    (folder / "trials").mkdir(parents=True)
    (folder / "sweep.yaml").write_text(yaml.safe_dump({"spec": {
        "name": "lr-browser", "metric": "cc", "mode": "max",
        "reference": [{"label": "paper", "source": "a table", "cc": 0.5}]}}))
    for name, lr in TRIALS.items():
        cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={shards}", "data.input_size=[32, 48]",
                                         "train.procedure=content", "train.optimizer=adam", f"train.lr={lr}",
                                         f"train.epochs={EPOCHS}"])
        assert Trainer(cfg, run_dir=folder / "trials" / name).fit()["status"] == "done"
        (folder / "trials" / name / "trial.json").write_text(json.dumps(
            {"trial": name, "params": {"train.lr": lr, "train.optimizer": "adam"}, "status": "done", "attempts": 1,
             "error": None, "jobs": []}))
    return folder, summarize_sweep(folder, split=SPLIT, device="cpu", images=2)


@pytest.fixture(scope="module")
def board(sweep):
    """The URL of ``tensorboard --logdir SWEEP/tb`` on 127.0.0.1 (a free port it picks); stopped afterwards."""
    folder, _ = sweep
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(folder / "tb"),
                             "--host", "127.0.0.1", "--port", "0", "--reload_interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            seen.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if m:
                yield m.group(1)
                break
        else:
            pytest.fail("tensorboard printed no URL within 90 s:\n" + "".join(seen))
        if proc.poll() is not None and not any("http://" in s for s in seen):
            pytest.fail("tensorboard exited:\n" + "".join(seen))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(webdriver_module, tmp_path_factory, request):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver_module.Chrome(service=Service(DRIVER), options=options)
    driver.artefacts = artefact_dir(request)
    yield driver
    driver.quit()


def wait_for(driver, script: str, ready, timeout: float = 60.0, *args):
    """Run ``script`` until ``ready(result)`` (polling every 0.5 s); returns the last result either way."""
    deadline = time.monotonic() + timeout
    while True:
        result = driver.execute_script(script, *args)
        if ready(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def epochs_logged(folder: Path, trial: str) -> int:
    return len((folder / "trials" / trial / "metrics.jsonl").read_text().splitlines())


SCALARS = DEEP + """
const colours = {}, cards = {};
for (const el of deep(document.body)) {
  if (el.tagName === 'PAPER-CHECKBOX' && (el.id || '').startsWith('checkbox-'))
    colours[el.id.slice(9)] = getComputedStyle(el).getPropertyValue('--paper-checkbox-checked-color').trim();
  if (el.tagName === 'TF-SCALAR-CARD' && el.tag) {
    const lines = [];
    for (const p of deep(el)) if (p.tagName && p.tagName.toLowerCase() === 'path' && p.getAttribute('class') === 'line')
      lines.push([getComputedStyle(p).stroke, ((p.getAttribute('d') || '').match(/[ML]/g) || []).length]);
    cards[el.tag] = lines;
    if (!lines.length) el.scrollIntoView();
  }
}
return [colours, cards];
"""


UNTICK_OUTLIERS = DEEP + """
for (const el of deep(document.body))
  if (el.id === 'ignore-y-outlier') { if (el.getAttribute('aria-checked') === 'true') el.click(); return true; }
return false;
"""


def rgb(colour: str) -> str:
    """'#ff7043' or 'rgb(255, 112, 67)' → 'rgb(255, 112, 67)'."""
    if colour.startswith("#"):
        return "rgb({}, {}, {})".format(*(int(colour[i:i + 2], 16) for i in (1, 3, 5)))
    return colour


def test_scalars_page_draws_every_trials_val_curves(sweep, board, browser):
    folder, result = sweep
    tags = [f"val/{m}" for m in result["metrics"]]
    browser.get(board + "#scalars&tagFilter=val")
    # a person unticks "Ignore outliers in chart scaling" to see every point of every curve
    wait_for(browser, UNTICK_OUTLIERS, lambda unticked: unticked)

    def ready(res):
        colours, cards = res
        return set(colours) == set(TRIALS) and all(len({c for c, n in cards.get(t, []) if n >= 2}) >= 2 for t in tags)

    colours, cards = wait_for(browser, SCALARS, ready)
    browser.save_screenshot(str(browser.artefacts / "scalars.png"))
    assert set(colours) == set(TRIALS), f"run selector shows {sorted(colours)}"
    for tag in tags:
        assert tag in cards, f"no {tag} chart on the Scalars page (cards: {sorted(cards)})"
        for trial, colour in colours.items():
            drawn = [n for c, n in cards[tag] if c == rgb(colour)]
            # one point per epoch: the raw curve has a vertex for each epoch of metrics.jsonl
            assert drawn and max(drawn) == epochs_logged(folder, trial), (tag, trial, cards[tag])


IMAGES = DEEP + """
for (const el of deep(document.body)) {
  if (el.tagName === 'IMG' && (el.src || '').includes('/data/plugin/images/individualImage') && el.complete
      && el.naturalWidth > 0) {
    const c = document.createElement('canvas');
    c.width = el.naturalWidth; c.height = el.naturalHeight;
    const ctx = c.getContext('2d'); ctx.drawImage(el, 0, 0);
    let card = el, title = '';
    while (card && !title) { card = card.parentNode || card.host; if (card && card.nodeType === 11) card = card.host;
      if (card && card.tagName === 'TF-IMAGE-LOADER') title = card.tag || ''; }
    return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data), title,
            document.body.innerText];
  }
}
return null;
"""


def test_images_page_shows_the_best_trials_panel(sweep, board, browser):
    folder, result = sweep
    best = result["best"]["trial"]
    browser.get(board + "#images")
    shown = wait_for(browser, IMAGES, lambda r: r is not None)
    browser.save_screenshot(str(browser.artefacts / "images.png"))
    assert shown is not None, "no panel image loaded on the Images page"
    width, height, rgba, title, _ = shown
    assert title == PANEL_TAG.format(best)
    from salnet.sweeps.board import predictions_panel

    panel = predictions_panel(folder / "trials" / best, result["trials"][0]["shards"], SPLIT, 2, "cpu", None)
    want = np.rint(panel.permute(1, 2, 0).numpy().astype(np.float64) * 255).astype(int)  # the best trial's panel
    assert (height, width) == want.shape[:2]
    got = np.asarray(rgba, dtype=int).reshape(height, width, 4)
    assert (got[..., 3] == 255).all()
    assert np.abs(got[..., :3] - want).max() <= 1  # TensorBoard truncates to uint8, predictions.png rounds


CLICK_METRICS = DEEP + """
let n = 0;
for (const el of deep(document.body))
  if (el.tagName === 'PAPER-CHECKBOX' && el.getAttribute('aria-checked') === 'false'
      && el.textContent.trim().startsWith(arguments[0])) { el.click(); n++; }
return n;
"""
CELLS = DEEP + """
const out = [];
for (const el of deep(document.body))
  if (el.tagName === 'VAADIN-GRID-CELL-CONTENT') {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) out.push([el.textContent.trim(), r.left, r.top]);
  }
return out;
"""


def table_rows(cells) -> list[list[str]]:
    """Grid cells (text, x, y) as the screen shows them: rows top to bottom, cells left to right, blanks dropped."""
    rows: dict[int, list] = {}
    for text, x, y in cells:
        if text:
            rows.setdefault(round(y / 4), []).append((x, text))
    return [[t for _, t in sorted(r)] for _, r in sorted(rows.items())]


def test_hparams_table_lists_every_trials_values(sweep, board, browser):
    folder, result = sweep
    metrics = [f"{SPLIT}/{m}" for m in result["metrics"]]
    browser.get(board + "#hparams")
    wait_for(browser, CELLS, lambda c: any(t == "Trial ID" for t, *_ in c))
    browser.execute_script(CLICK_METRICS, f"{SPLIT}/")  # the table shows the first five metrics until asked
    header = ["Trial ID", "status", "train.lr", "train.optimizer", *metrics]

    def ready(cells):
        rows = table_rows(cells)
        return header in rows and sum(r[0] in TRIALS for r in rows) == len(TRIALS)

    rows = table_rows(wait_for(browser, CELLS, ready))
    browser.save_screenshot(str(browser.artefacts / "hparams.png"))
    assert header in rows, rows
    by_trial = {r[0]: r for r in rows if r[0] in TRIALS}
    assert sorted(by_trial) == sorted(TRIALS)

    def shown(v: float) -> set[str]:  # TensorBoard prints toPrecision(5) of the float32 it stored (or the double)
        return {browser.execute_script("return Number(arguments[0]).toPrecision(5)", float(x))
                for x in (v, np.float32(v))}

    for t in result["trials"]:
        row = dict(zip(header, by_trial[t["trial"]]))
        assert row["status"] == "done" and row["train.optimizer"] == "adam"
        assert row["train.lr"] in shown(TRIALS[t["trial"]])
        for m in result["metrics"]:
            assert row[f"{SPLIT}/{m}"] in shown(t["means"][m]), (t["trial"], m, row)


def test_summary_pictures_beside_summary_md(sweep):
    folder, result = sweep
    assert (folder / "summary.md").is_file()
    with Image.open(folder / "summary.png") as im:
        assert im.format == "PNG" and im.width > 600
    with Image.open(folder / "predictions.png") as im:  # image | both trials | ground truth, titled, 2 rows
        assert im.format == "PNG" and im.width >= 4 * 200 and im.height >= 2 * 120
