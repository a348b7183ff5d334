"""The explorer in a real browser: JupyterLab on a free port, headless system Chromium (Playwright).

Runs every cell of ``notebooks/04_explorer.ipynb``, changes the image, method and
q controls, and checks that the IoU text and the figure change and that no cell
shows an error. Parameters: ``params/quick.yaml`` when its models are cached
(``make quick``), else the tiny setting. Screenshots go to ``$LVW_SCREENSHOTS``
(``make test-browser``: ``results/screenshots``; otherwise ``runs/screenshots``).

Skipped when no Chromium is found (``apt-get install chromium``), unless
``LVW_BROWSER_REQUIRED=1`` (``make test-browser``), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lvwlib.store.paths import project_root

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IOU = ".lvw-explorer .lvw-iou"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def explorer_params() -> str:
    """$LVW_BROWSER_PARAMS, else quick when its models are cached, else tiny (the notebook trains tiny)."""
    if os.environ.get("LVW_BROWSER_PARAMS"):
        return os.environ["LVW_BROWSER_PARAMS"]
    from lvwlib.ui.explorer import cached_choices
    from lvwlib.ui.session import read_params

    try:
        if cached_choices(read_params("params/quick.yaml")):
            return "params/quick.yaml"
    except Exception:  # noqa: BLE001 - no data or no cache: fall back to the tiny setting
        pass
    return "params/tiny.yaml"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("LVW_BROWSER_REQUIRED"):
            pytest.fail("make test-browser needs Chromium: apt-get install chromium")
        pytest.skip("no Chromium found (apt-get install chromium): browser test skipped")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]'): browser test skipped")
    return path


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    port, token = free_port(), secrets.token_hex(16)
    params = explorer_params()
    # JupyterLab autosaves: serve a copy of the notebook so the checkout's file keeps no outputs
    root = tmp_path_factory.mktemp("lab")
    # user settings of this server only: no "get notified about Jupyter news?" toast over the screenshots
    settings = root / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {**os.environ, "LVW_EXPLORER_PARAMS": params, "JUPYTERLAB_SETTINGS_DIR": str(root / "settings")}
    (root / "notebooks").mkdir()
    shutil.copy(project_root() / "notebooks" / "04_explorer.ipynb", root / "notebooks" / "04_explorer.ipynb")
    log = (root / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--MappingKernelManager.default_kernel_name=lvw", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail(f"JupyterLab did not start on port {port}; see {log.name}")
    yield url, token, params
    proc.terminate()
    proc.wait(timeout=30)


def _wait_kernel_idle(url: str, token: str, timeout: float = 180.0) -> None:
    """Wait until the notebook's kernel exists and reports idle (REST API of the server)."""
    import json

    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=5) as resp:
            kernels = json.loads(resp.read())
        if kernels and all(k.get("execution_state") == "idle" for k in kernels):
            time.sleep(2)
            return
        time.sleep(1)
    raise AssertionError("the notebook's kernel did not become idle")


def _wait_change(page, selector: str, old: str, timeout: float = 120.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = page.locator(selector).inner_text()
        if text and text != old:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{selector} did not change from {old!r}")


def _figure_src(page) -> str:
    return page.locator(".lvw-explorer .lvw-image img").first.get_attribute("src") or ""


def _wait_figure(page, old: str) -> str:
    """Wait until the explorer's main figure differs from ``old``; the new src."""
    page.wait_for_function("f => { const i = document.querySelector('.lvw-explorer .lvw-image img');"
                           " return i && i.getAttribute('src') !== f; }", arg=old)
    return _figure_src(page)


def _errors(page) -> int:
    return page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').count()


def test_explorer_in_jupyterlab(lab, chromium):
    from playwright.sync_api import sync_playwright

    url, token, params = lab
    shots = Path(os.environ.get("LVW_SCREENSHOTS", project_root() / "runs" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.set_default_timeout(120_000)
        page.goto(f"{url}/lab/tree/notebooks/04_explorer.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        _wait_kernel_idle(url, token)
        for _ in range(3):  # a click before the kernel is connected runs nothing: try again
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            try:
                page.wait_for_selector(".jp-InputPrompt:has-text('[1]'), .jp-InputPrompt:has-text('[*]')",
                                       timeout=30_000)
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError: not started yet
                time.sleep(2)
        page.wait_for_selector(IOU + ":has-text('IoU')", timeout=300_000)
        page.wait_for_selector(".lvw-explorer .lvw-image img", timeout=60_000)
        assert _errors(page) == 0, "a cell shows an error"
        iou, fig = page.locator(IOU).inner_text(), _figure_src(page)

        def control(label: str):
            return page.locator(".lvw-explorer .widget-inline-hbox").filter(
                has=page.locator(f"label:text-is('{label}')")).first

        # the image: next image with the slider's keyboard
        control("image").locator(".noUi-handle, input[type=range]").first.focus()
        page.keyboard.press("ArrowRight")
        iou = _wait_change(page, IOU, iou)
        fig = _wait_figure(page, fig)
        # the method
        control("method").locator("select").select_option(label="LVW w/o alignment")
        fig = _wait_figure(page, fig)
        iou = page.locator(IOU).inner_text()
        # q
        control("q").locator(".noUi-handle, input[type=range]").first.focus()
        page.keyboard.press("ArrowRight")
        iou = _wait_change(page, IOU, iou)
        assert "q=55" in iou
        fig = _wait_figure(page, fig)
        control("method").locator("select").select_option(label="LVW")
        page.wait_for_timeout(1500)
        assert _errors(page) == 0, "a cell shows an error after changing the controls"
        page.locator(".lvw-explorer").screenshot(path=str(shots / "explorer.png"))
        # one word drilled into: the second of the top m
        words = control("word").locator("select")
        options = words.locator("option").all_inner_texts()
        assert len(options) >= 2, options
        before = page.locator(".lvw-explorer .lvw-word-text").inner_text()
        words.select_option(label=options[1])
        _wait_change(page, ".lvw-explorer .lvw-word-text", before)
        page.wait_for_timeout(1000)
        page.locator(".lvw-explorer .lvw-word").screenshot(path=str(shots / "explorer_word.png"))
        assert _errors(page) == 0
        browser.close()
    assert (shots / "explorer.png").stat().st_size > 10_000
