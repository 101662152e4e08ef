"""The documentation site, opened in a real headless browser with no network.

The site is built with warnings as errors (a broken reference or a docstring that does not
render fails the build), or taken from ``MLX_SCHEDULES_DOCS_HTML`` when CI has just built it
with ``bash scripts/dev.sh docs``. Debian's ``chromium`` and ``chromium-driver`` open the
pages through Selenium; every request to the network is refused by pointing the browser at a
dead proxy, so formulas only render if the math renderer is served by the site itself.

Needs the ``docs`` extra and the two Debian packages; elsewhere the tests are skipped, except
under CI (``CI`` set), where a missing tool is a failure.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mlx_schedules

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def require(module: str):
    """Import a tool of the docs extra: skip without it, except under CI."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason="needs the docs extra: pip install -e '.[docs]'")


def require_program(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"needs {' or '.join(names)} (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built site's folder (built here, warnings as errors, unless CI built it)."""
    given = os.environ.get("MLX_SCHEDULES_DOCS_HTML")
    if given:
        path = Path(given).resolve()
        assert (path / "index.html").is_file(), f"MLX_SCHEDULES_DOCS_HTML={given}: no index.html"
        return path
    require("sphinx")
    out = tmp_path_factory.mktemp("site") / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"the docs build failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="session")
def browser():
    webdriver = require("selenium.webdriver")
    chromium = require_program("chromium", "chromium-browser")
    driver_path = require_program("chromedriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions",
                "--no-first-run", "--window-size=1280,1600",
                # Any request to the network goes to a port nothing listens on, and fails.
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        options.add_argument(arg)
    # The suite runs under mlx-fastblas, whose LD_PRELOAD of OpenBLAS keeps chromium's
    # renderer from starting: the browser gets the environment without it.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    service = Service(executable_path=driver_path, env=env)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(browser, site: Path, page: str) -> None:
    browser.get((site / page).as_uri())
    wait_for(browser, "return document.readyState === 'complete'", f"{page} to load")


def wait_for(browser, script: str, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def requested_urls(browser) -> list[str]:
    """Every script, style sheet, image and other resource the page asked for."""
    return browser.execute_script(
        "return [...performance.getEntriesByType('resource').map(e => e.name),"
        " ...[...document.scripts].map(s => s.src).filter(Boolean),"
        " ...[...document.querySelectorAll('link[href]')].filter(l => l.rel !== 'canonical')"
        "     .map(l => l.href),"
        " ...[...document.images].map(i => i.currentSrc || i.src)]")


def screenshot(browser, name: str) -> None:
    """Save a screenshot where ``DOCS_SCREENSHOT_DIR`` says (to look at the pages by eye)."""
    folder = os.environ.get("DOCS_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


# Math typeset: MathJax 3 replaces each \[...\] / \(...\) by an <mjx-container>. Returns
# the counts once typesetting is done (MathJax's startup promise has resolved).
TYPESET = """
if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return null;
if (window.__typeset === undefined) {
  window.__typeset = false;
  MathJax.startup.promise.then(() => { window.__typeset = true; });
}
if (!window.__typeset) return null;
const blocks = [...document.querySelectorAll('div.math')];
return {
  blocks: blocks.length,
  rendered_blocks: blocks.filter(b => b.querySelector('mjx-container')).length,
  containers: document.querySelectorAll('mjx-container').length,
  errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
  zero_width: [...document.querySelectorAll('mjx-container')]
      .filter(c => c.getBoundingClientRect().width === 0).length,
  raw_tex: [...document.querySelectorAll('div.math, span.math')]
      .filter(e => /\\\\[\\[\\(]|\\\\(frac|eta|cos|bigl|tfrac)/.test(e.textContent)).length,
};
"""


def math_docstrings() -> list[str]:
    """Public names of mlx_schedules whose docstring holds a ``.. math::`` block."""
    return [name for name in mlx_schedules.__all__
            if ".. math::" in (inspect.getdoc(getattr(mlx_schedules, name)) or "")]


def test_schedule_formulas_render_as_math_without_network(browser, site: Path):
    expected = math_docstrings()
    assert len(expected) >= 15, expected  # the schedules' docstrings carry their formulas
    open_page(browser, site, "api/schedules.html")
    state = wait_for(browser, "return (() => {" + TYPESET + "})()", "MathJax to typeset")
    screenshot(browser, "api-schedules")
    assert state["blocks"] >= len(expected), state
    assert state["rendered_blocks"] == state["blocks"], state  # every formula typeset
    assert state["errors"] == 0, state  # no TeX that MathJax could not parse
    assert state["zero_width"] == 0, state  # the fonts loaded: each formula takes room
    assert state["raw_tex"] == 0, state  # no formula left as raw TeX
    # Each schedule with a formula in its docstring has typeset math in its own entry.
    without = browser.execute_script(
        "return arguments[0].filter(n => { const dt = document.getElementById("
        "'mlx_schedules.' + n); return !dt || !dt.parentElement.querySelector('mjx-container');"
        "})", expected)
    assert without == [], f"schedules whose formula is not rendered on the page: {without}"
    urls = requested_urls(browser)
    assert any("mathjax" in u.lower() for u in urls), urls  # MathJax came from the site...
    assert all(u.startswith("file://") for u in urls), [u for u in urls
                                                        if not u.startswith("file://")]


def test_every_public_name_is_documented(browser, site: Path):
    import trainers

    for page, package in (("api/schedules.html", mlx_schedules), ("api/trainers.html",
                                                                   trainers)):
        open_page(browser, site, page)
        missing = browser.execute_script(
            "return arguments[0].filter(n => !document.getElementById(arguments[1] + '.' + n))",
            list(package.__all__), package.__name__)
        assert missing == [], f"{page} lacks {missing}"


def test_gallery_images_load_and_cover_every_schedule(browser, site: Path):
    open_page(browser, site, "gallery.html")
    screenshot(browser, "gallery")
    images = browser.execute_script(
        "return [...document.querySelectorAll('article img')].map(i => ({src: i.src, "
        "ok: i.complete && i.naturalWidth > 100 && i.naturalHeight > 100}))")
    assert len(images) >= 20, images
    assert [i["src"] for i in images if not i["ok"]] == []
    text = browser.execute_script("return document.querySelector('article').innerText")
    absent = [name for name in mlx_schedules.schedule_names() if name not in text]
    assert absent == [], f"schedules missing from the gallery: {absent}"


@pytest.mark.parametrize("page", ["index.html", "results.html", "comparison/comparison.html",
                                  "trainer.html", "guides/several-macs.html",
                                  "benchmarks.html", "schedules/index.html"])
def test_pages_load_their_images_and_nothing_from_the_network(browser, site: Path, page: str):
    open_page(browser, site, page)
    if page == "index.html":
        screenshot(browser, "index")
    broken = browser.execute_script(
        "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)")
    assert broken == []
    urls = requested_urls(browser)
    assert all(u.startswith("file://") for u in urls), [u for u in urls
                                                        if not u.startswith("file://")]
    title = browser.execute_script("return document.querySelector('article h1').innerText")
    assert title.strip(), page


def heading_texts(html: str) -> set[str]:
    """The text of every heading of a page, without markup, spaces normalised."""
    import html as html_lib

    found = re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", html, re.S)
    return {" ".join(html_lib.unescape(re.sub(r"<[^>]+>|¶", "", h)).split()) for h in found}


def test_every_readme_section_is_on_the_site(site: Path):
    """The README may shrink: each of its sections must be a heading somewhere on the site."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = [" ".join(re.sub(r"`", "", h).split())
                for h in re.findall(r"^#{2,3} (.+)$", readme, re.M)]
    assert len(sections) >= 4, sections
    on_site: set[str] = set()
    for page in site.rglob("*.html"):
        on_site |= heading_texts(page.read_text(encoding="utf-8"))
    missing = [s for s in sections if s not in on_site]
    assert missing == [], f"README sections with no heading on the site: {missing}"


def test_trainer_reference_describes_every_keyword(site: Path):
    import trainers

    html = (site / "api" / "trainers.html").read_text(encoding="utf-8")
    for name, start, end in (("Trainer", 'id="trainers.Trainer"', 'id="trainers.Trainer.fit"'),
                             ("fit", 'id="trainers.Trainer.fit"', "</dl>")):
        entry = html[html.index(start):]
        entry = entry[:entry.index(end, len(start))]
        text = re.sub(r"<[^>]+>", " ", entry)
        # The signature lists a keyword once; its description names it a second time.
        function = trainers.Trainer if name == "Trainer" else trainers.Trainer.fit
        undescribed = [p for p in inspect.signature(function).parameters
                       if p != "self" and len(re.findall(rf"\b{p}\b", text)) < 2]
        assert undescribed == [], f"{name}: keywords without a description: {undescribed}"


def site_pages(site: Path) -> list[str]:
    """Every page of the site, relative to it (not Sphinx's own index and search pages)."""
    skip = ("_", "genindex", "search", "py-modindex")
    return sorted(str(p.relative_to(site)) for p in site.rglob("*.html")
                  if not str(p.relative_to(site)).startswith(skip) and not is_redirect(p))


def is_redirect(page: Path) -> bool:
    return 'http-equiv="refresh"' in page.read_text(encoding="utf-8")[:2000]


# Elements that would scroll sideways: code, display formulas (MathJax's output included)
# and tables. The site's CSS wraps code and table code, and wide formulas are split.
OVERFLOWING = """
return [...document.querySelectorAll(
    'article pre, article div.math, article mjx-container[display="true"], '
    + 'article .table-wrapper')]
  .filter(e => e.scrollWidth > e.clientWidth)
  .map(e => e.tagName + ' ' + e.scrollWidth + '>' + e.clientWidth + ': '
            + e.textContent.trim().slice(0, 60))
"""


def test_nothing_scrolls_sideways_at_the_default_width(browser, site: Path):
    width = browser.execute_script("return window.innerWidth")
    assert width >= 1200, width  # the default window of the fixture (1280 wide)
    wide = {}
    for page in site_pages(site):
        open_page(browser, site, page)
        if browser.execute_script("return !!document.querySelector('div.math')"):
            wait_for(browser, "return (() => {" + TYPESET + "})()", f"MathJax on {page}")
        found = browser.execute_script(OVERFLOWING)
        if found:
            wide[page] = found
    assert wide == {}, f"elements with a horizontal scrollbar: {wide}"


# Clipboard.js copies through document.execCommand("copy") on a selected text area: catch
# the text there instead of needing a real clipboard.
CLICK_COPY = """
window.__copied = null;
document.execCommand = function (cmd) {
  const a = document.activeElement;
  window.__copied = (a && a.value !== undefined) ? a.value : String(document.getSelection());
  return true;
};
const pre = [...document.querySelectorAll('div.highlight pre')]
    .find(p => p.textContent.includes(arguments[0]));
if (!pre) return 'no block holding ' + arguments[0];
const button = pre.parentElement.querySelector('button.copybtn')
    || pre.closest('div.highlight').querySelector('button.copybtn');
if (!button) return 'no copy button';
button.click();
return window.__copied;
"""


def test_copy_button_copies_examples_without_prompts_or_output(browser, site: Path):
    open_page(browser, site, "api/schedules.html")
    wait_for(browser, "return document.querySelectorAll('button.copybtn').length > 10",
             "copy buttons")
    # linear_schedule's example: '>>> ' lines, their outputs, and no prompt in the copy.
    import inspect as inspect_lib

    example = inspect_lib.getdoc(mlx_schedules.linear_schedule)
    prompts = [line.strip()[4:] for line in example.splitlines()
               if line.strip().startswith(">>> ")]
    assert prompts, example
    copied = browser.execute_script(CLICK_COPY, prompts[0])
    assert copied is not None and not copied.startswith(("no block", "no copy")), copied
    assert copied.splitlines() == prompts, copied  # only the code, without '>>> ' or output
    urls = requested_urls(browser)
    assert any("copybutton" in u for u in urls), urls  # served by the site itself
    assert all(u.startswith("file://") for u in urls)


def entry_text(html: str, anchor: str) -> str:
    """The text of the documentation entry (``<dd>``) of the object with this id."""
    import html as html_lib

    start = html.index(f'id="{anchor}"')
    dd = html.index("<dd>", start)
    depth, k = 0, dd
    for match in re.finditer(r"<(/?)dd\b", html[dd:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            k = dd + match.start()
            break
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", html[dd:k])).split())


def test_every_public_name_shows_its_own_docstring(site: Path):
    """No entry shows a builtin's docstring (trainers.STOP once showed str's)."""
    import builtins

    import trainers

    builtin_firsts = set()
    for value in vars(builtins).values():
        doc = inspect.getdoc(value)
        if doc:
            builtin_firsts.add(" ".join(doc.split("\n\n")[0].split()))
    for page, package in (("api/schedules.html", mlx_schedules), ("api/trainers.html",
                                                                   trainers)):
        html = (site / page).read_text(encoding="utf-8")
        for name in package.__all__:
            text = entry_text(html, f"{package.__name__}.{name}")
            assert len(text.split()) >= 5, f"{page}: {name} has no description: {text!r}"
            borrowed = [d for d in builtin_firsts if text.startswith(d[:40])]
            assert borrowed == [], f"{page}: {name} shows a builtin's docstring: {text[:120]}"


# One page per topic: what the sidebar lists at its top level, in this order.
TOPICS = ["Install", "Schedules", "The trainer", "The command line", "Guides", "Results",
          "Benchmarks", "API reference", "Project"]

# Every former page (merged or moved) -> the page that holds its content now.
MOVED = {
    "SCHEDULES.html": "schedules/index.html",
    "schedules.html": "schedules/index.html",
    "TRAINERS.html": "trainer.html",
    "training.html": "trainer.html",
    "SCRIPTS.html": "command-line.html",
    "scripts-overview.html": "command-line.html",
    "BENCH_SCHEDULES.html": "benchmarks.html",
}

# Distinctive text of each former page that must still be found somewhere on the site (its
# headings, and sentences or table cells only it had), so that no content is lost in a merge.
FORMER_CONTENT = {
    "SCHEDULES.md": ["What every schedule guarantees",
                     "Peer schedulers and their equivalents here",
                     "CosineAnnealingWarmRestarts(T_0, T_mult, eta_min)", "get_wsd_schedule",
                     "WarmupCosineLR", "fit_flat_cos", "dolomite-engine", "lowbias32",
                     "Cost inside a compiled training step", "Three changes brought the cost"],
    "schedules.md": ["Beyond the learning rate",
                     "Schedules as data, and evaluation over many steps",
                     "Eager and compiled calls", "the source article's three",
                     "a stand-alone compile of a 0-d function saves little"],
    "TRAINERS.md": ["Public API", "The run directory", "Checkpoints and exact resume",
                    "Non-finite values", "Auditing a run", "Real models: precision, parameter "
                    "groups, memory, best and averaged weights", "Learning-rate range test",
                    "Data parallel", "Evaluation across ranks", "step_00000300.corrupt",
                    "Where the trainer's time goes", "Device-resident batches",
                    "MLX_FASTBLAS_LIB", "Run A,", "Run B,", "Gradient checkpointing trades"],
    "training.md": ["the loop people copy gets the expensive details wrong",
                    "Per-step log of the rates actually used"],
    "SCRIPTS.md": ["Datasets and the cache", "cifar-10-binary.tar.gz", "--stop-after N",
                   "Compilation:", "mlx-schedules plot: draw schedules",
                   "mlx-schedules train: one run", "mlx-schedules compare: the comparison",
                   "mlx-schedules range-test: find a peak rate"],
    "scripts-overview.md": ["a run directory the trainer refuses",
                            "budget sweep (--full: 750/1500/3000/6000 steps)"],
    "BENCH_SCHEDULES.md": ["What a schedule costs", "ours / NumPy",
                           "raising a float32-rounded rate"],
    "results.md (Benchmarks)": ["Device-resident batches", "bench_transformer.py"],
}


def site_text(site: Path) -> str:
    """The text of every page of the site, markup removed, spaces normalised."""
    import html as html_lib

    parts = []
    for page in site_pages(site):
        html = (site / page).read_text(encoding="utf-8")
        html = html[html.find("<article"):html.find("</article>")]
        html = re.sub(r"</?(span|code|a|em|strong|b|i|sub|sup)\b[^>]*>|¶", "", html)
        parts.append(html_lib.unescape(re.sub(r"<[^>]+>", " ", html)))
    text = " ".join(" ".join(parts).split())
    return text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')


def test_no_former_page_is_lost(site: Path):
    text = site_text(site)
    missing = {page: [t for t in texts if " ".join(t.split()) not in text]
               for page, texts in FORMER_CONTENT.items()}
    assert {p: m for p, m in missing.items() if m} == {}


def test_sidebar_shows_one_page_per_topic(browser, site: Path):
    open_page(browser, site, "index.html")
    top = browser.execute_script(
        "return [...document.querySelectorAll('.sidebar-tree > ul > li.toctree-l1 > a')]"
        ".map(a => a.textContent.trim())")
    assert top == TOPICS
    screenshot(browser, "site-index")


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_page_paths_lead_to_their_new_page(browser, site: Path, old: str, new: str):
    assert (site / old).is_file() and is_redirect(site / old), old
    target = (site / new).resolve().as_uri()
    browser.get((site / old).as_uri() + "#auditing-a-run")
    wait_for(browser, "return location.href.split('#')[0] === arguments[0]".replace(
        "arguments[0]", repr(target)), f"{old} to lead to {new}")
    assert browser.execute_script("return location.hash") == "#auditing-a-run"  # kept
    title = browser.execute_script("return document.querySelector('article h1').innerText")
    assert title.strip()


def test_no_two_pages_differ_only_in_case(site: Path):
    pages = [str(p.relative_to(site)).lower() for p in site.rglob("*.html")
             if not is_redirect(p)]
    assert len(pages) == len(set(pages))
