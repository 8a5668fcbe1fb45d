"""Open every page of the built book in headless Chromium and check what a reader would see.

The built HTML (``book/_build/html``, from ``make book``) is served on 127.0.0.1 by a stdlib
``http.server``; each page listed in ``_toc.yml`` (the root included) is loaded in Debian's
``chromium`` through Debian's ``chromedriver`` (Selenium; nothing is downloaded). A page fails on:

* a missing page (not HTTP 200, or an error-page title);
* a broken ``<img>`` (not ``complete`` or ``naturalWidth == 0``);
* an empty figure: an image or SVG in a cell output smaller than 20 px, or an image that is a single
  flat colour (an empty matplotlib figure);
* a Python traceback in a cell output;
* a page built from an executed notebook that shows no cell output at all;
* a table wider than its article at the 1280 px window: the article's text column, or, for a cell
  tagged ``full-width``, the theme's full width (sphinx-book-theme hides the page's table of contents
  while such a cell is in view); a table in a scrolling container counts at its full width, since
  the columns past the edge are out of view;
* a number cell that wraps: a table cell whose text has digits and no letters ("82.95 ± 1.02",
  "62.52" with a subscript "0.21", "[-0.61, +0.67]") laid out on more than one line.

Only 127.0.0.1 resolves in the browser, so the check is offline and an image hot-linked from the
internet counts as broken (the book must be self-contained).

A full-page screenshot of each page is saved as ``book/_build/screenshots/<docname, "/" -> "-">.png``
(``CALIB_BOOK_HTML`` points the test at another build; its screenshots go next to it). Browser
paths can be overridden with ``CALIB_CHROMIUM`` / ``CALIB_CHROMEDRIVER``.

Without a build or without chromium/chromedriver the tests skip, saying how to get them, unless
``CALIB_REQUIRE_BOOK=1`` (``make book-check``, CI), where they fail instead. ``test_checker_*``
runs the same checking function on a few fake pages in ``tmp_path`` so that it is known to fail.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("CALIB_BOOK_HTML") or ROOT / "book" / "_build" / "html")  # override: another build
SHOTS = HTML.parent / "screenshots"
WINDOW = (1280, 2000)
MIN_FIGURE_PX = 20
SOURCE_SUFFIXES = (".ipynb", ".md", ".rst")

BUILD_HINT = "build it first with `make book PROFILE=smoke` (or `.venv/bin/jupyter-book build . --path-output book`)"
BROWSER_HINT = ("install Debian's chromium and chromium-driver (`make browser`, i.e. "
                "`apt-get install chromium chromium-driver`) and selenium (`pip install -e '.[book]'`)")


def unavailable(message: str):
    """Skip, or fail when CALIB_REQUIRE_BOOK=1 (the CI book check must not pass by skipping)."""
    if os.environ.get("CALIB_REQUIRE_BOOK") == "1":
        pytest.fail(message + " (CALIB_REQUIRE_BOOK=1)", pytrace=False)
    pytest.skip(message)


# ---------------------------------------------------------------------------------------------
# Pages: every `file:` (and `glob:`) entry of _toc.yml at any depth, root first.

def _docname(entry: str) -> str:
    p = Path(entry)
    return p.with_suffix("").as_posix() if p.suffix in SOURCE_SUFFIXES else p.as_posix()


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    data = yaml.safe_load(toc.read_text())
    pages: list[str] = [_docname(data["root"])]

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "file" in node:
                pages.append(_docname(node["file"]))
            if "glob" in node:
                pages.extend(sorted({_docname(p.relative_to(toc.parent).as_posix())
                                     for p in toc.parent.glob(node["glob"] + ".*")
                                     if p.suffix in SOURCE_SUFFIXES}))
            for key, value in node.items():
                if key not in ("file", "glob", "root"):
                    walk(value)

    walk(data)
    return list(dict.fromkeys(pages))


def is_notebook(html: Path, docname: str) -> bool:
    """Built from a notebook (so it must show outputs): jupyter-book copies sources to _sources/."""
    return (html / "_sources" / f"{docname}.ipynb").exists() or (ROOT / f"{docname}.ipynb").exists()


# ---------------------------------------------------------------------------------------------
# Server and browser.

@contextlib.contextmanager
def serve(directory: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def chromium_paths() -> tuple[str | None, str | None]:
    browser = shutil.which(os.environ.get("CALIB_CHROMIUM") or "chromium")
    driver = shutil.which(os.environ.get("CALIB_CHROMEDRIVER") or "chromedriver")
    return browser, driver


def start_chromium():
    browser, driver = chromium_paths()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed: " + BROWSER_HINT)
    if not browser or not driver:
        unavailable(f"chromium={browser!r} chromedriver={driver!r} not found: " + BROWSER_HINT)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", "--mute-audio",
                # hermetic: only the local server resolves; a figure on the internet counts as broken
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.page_load_strategy = "normal"  # get() returns after the load event
    # Explicit driver path and binary: Selenium Manager is not consulted, nothing is downloaded.
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(30)
    return drv


# ---------------------------------------------------------------------------------------------
# The check.

# Runs in the page after load: waits for every image, then measures images, SVGs and outputs.
PAGE_JS = r"""
const done = arguments[arguments.length - 1];
const MAX_SIDE = 1024;
(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  const settle = i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); });
  await Promise.race([Promise.all(imgs.map(settle)), new Promise(r => setTimeout(r, 20000))]);
  if (document.fonts) await document.fonts.ready;

  function pixels(img) {  // distinct colours (capped) and luma std of the decoded image
    const s = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
    const w = Math.max(1, Math.round(img.naturalWidth * s)), h = Math.max(1, Math.round(img.naturalHeight * s));
    const c = document.createElement('canvas'); c.width = w; c.height = h;
    const ctx = c.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(img, 0, 0, w, h);
    let d;
    try { d = ctx.getImageData(0, 0, w, h).data; } catch (e) { return {error: String(e)}; }
    const colours = new Set(); let sum = 0, sum2 = 0; const n = d.length / 4;
    for (let k = 0; k < d.length; k += 4) {
      if (colours.size < 256) colours.add((d[k] << 24) ^ (d[k+1] << 16) ^ (d[k+2] << 8) ^ d[k+3]);
      // luma of the pixel composited on white (transparent == background)
      const a = d[k+3] / 255, y = (0.299*d[k] + 0.587*d[k+1] + 0.114*d[k+2]) * a + 255 * (1 - a);
      sum += y; sum2 += y * y;
    }
    const mean = sum / n;
    return {colours: colours.size, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean))};
  }

  const images = imgs.map(i => {
    const r = i.getBoundingClientRect();
    const out = !!i.closest('.cell_output');
    const info = {src: i.getAttribute('src') || i.currentSrc || '', complete: i.complete,
                  naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                  width: r.width, height: r.height, output: out,
                  shown: i.getClientRects().length > 0};  // false inside a collapsed (hide-output) toggle
    if (out && i.complete && i.naturalWidth > 0) Object.assign(info, pixels(i));
    return info;
  });
  const svgs = Array.from(document.querySelectorAll('.cell_output svg'))
    .filter(s => !s.parentElement.closest('.cell_output svg'))  // outermost only
    .map(s => { const r = s.getBoundingClientRect();
      return {width: r.width, height: r.height, shown: s.getClientRects().length > 0,
              shapes: s.querySelectorAll('path,rect,circle,ellipse,line,polyline,polygon,text,image,use').length}; });
  const outputs = Array.from(document.querySelectorAll('.cell_output'));
  const tracebacks = [];
  for (const el of document.querySelectorAll('.cell_output .traceback, .output.traceback, .cell_output')) {
    const t = el.innerText || el.textContent || '';
    if (el.matches('.traceback') || t.includes('Traceback (most recent call last)')) {
      const lines = t.split('\n').map(x => x.trim()).filter(Boolean);
      tracebacks.push(lines.slice(-1)[0] || '(empty traceback)');
    }
  }
  done({title: document.title, images, svgs, tracebacks: Array.from(new Set(tracebacks)),
        outputs: outputs.filter(o => (o.innerText || '').trim() || o.querySelector('img,svg,canvas,iframe,table')).length});
})().catch(e => done({error: String(e && e.stack || e)}));
"""


# Runs in the page after PAGE_JS: every shown table in the article against its frame, and every
# number cell's lines (text boxes that do not overlap vertically are on different lines; a
# subscript overlaps its number's line, a wrapped part does not).
LAYOUT_JS = r"""
const article = document.querySelector('article.bd-article') || document.querySelector('article')
  || document.querySelector('main') || document.body;
const viewport = document.documentElement.clientWidth;
function frame(table) {
  const wide = table.closest('.tag_full-width, .tag_full_width, div.full-width, div.full_width');
  const el = wide || article, r = el.getBoundingClientRect(), cs = getComputedStyle(el);
  const pad = wide ? [0, 0] : [parseFloat(cs.paddingLeft) + parseFloat(cs.borderLeftWidth),
                               parseFloat(cs.paddingRight) + parseFloat(cs.borderRightWidth)];
  return {left: Math.max(0, r.left + pad[0]), right: Math.min(viewport, r.right - pad[1]), wide: !!wide};
}
function lines(cell) {
  const rects = [];
  const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (!n.textContent.trim()) continue;
    const range = document.createRange(); range.selectNodeContents(n);
    for (const r of range.getClientRects()) if (r.width > 0.5 && r.height > 0.5) rects.push(r);
  }
  rects.sort((a, b) => a.top - b.top);
  let count = rects.length ? 1 : 0, bottom = rects.length ? rects[0].bottom : 0;
  for (const r of rects.slice(1)) {
    if (r.top >= bottom - 1) { count += 1; bottom = r.bottom; } else bottom = Math.max(bottom, r.bottom);
  }
  return count;
}
const NUMBER = t => /\d/.test(t) && !/\p{L}/u.test(t);
return Array.from(article.querySelectorAll('table')).filter(t => t.getClientRects().length > 0).map((t, k) => {
  const r = t.getBoundingClientRect(), f = frame(t);
  const cap = t.caption ? t.caption.innerText : (t.closest('.cell_output') ? '' : '(markdown table)');
  const wrapped = [];
  let numbers = 0;
  for (const c of t.querySelectorAll('td, th')) {
    const text = (c.innerText || '').trim();
    if (!NUMBER(text)) continue;
    numbers += 1;
    const n = lines(c);
    if (n > 1) wrapped.push({text: text.replace(/\s+/g, ' '), lines: n});
  }
  return {index: k + 1, caption: cap.trim().slice(0, 70), width: r.width, frame: f.right - f.left, wide: f.wide,
          over: Math.max(r.right - f.right, f.left - r.left, 0), numbers, wrapped};
});
"""


def layout_problems(docname: str, tables: list[dict]) -> list[str]:
    """LAYOUT_JS's measurements -> one problem per table that overflows its frame, one per table
    with wrapped number cells (how many, and the first few)."""
    out = []
    for t in tables:
        name = f"table #{t['index']}" + (f" ({t['caption']!r})" if t["caption"] else "")
        if t["over"] > 1:
            where = "the theme's full width" if t["wide"] else "the article"
            out.append(f"{docname}: {name} is {t['width']:.0f} px wide, {t['over']:.0f} px past {where} "
                       f"({t['frame']:.0f} px) at a {WINDOW[0]} px window")
        if t["wrapped"]:
            eg = "; ".join(f"{w['text']!r} on {w['lines']} lines" for w in t["wrapped"][:3])
            out.append(f"{docname}: {name}: {len(t['wrapped'])} of {t['numbers']} number cells wrap ({eg})")
    return out


def flat(img: dict) -> bool:
    """A single flat colour: what an empty matplotlib figure looks like."""
    return img.get("colours", 999) <= 2 or img.get("std", 999.0) < 1.0


def check_page(driver, base_url: str, docname: str, expect_outputs: bool,
               screenshot: Path | None = None) -> list[str]:
    """Load one page and return its problems (empty list: the page is fine)."""
    url = f"{base_url}/{docname}.html"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            status = resp.status
    except urllib.error.HTTPError as e:
        status = e.code
    if status != 200:
        return [f"{docname}: missing page, HTTP {status} for {url}"]

    driver.get(url)
    info = driver.execute_async_script(PAGE_JS)
    if screenshot is not None:
        save_screenshot(driver, screenshot)
    if "error" in info:
        return [f"{docname}: page check script failed: {info['error']}"]

    problems = []
    title = (info["title"] or "").strip()
    if not title or any(s in title.lower() for s in ("404", "not found", "error response")):
        problems.append(f"{docname}: looks like an error page (title {title!r})")
    for img in info["images"]:
        src = img["src"] if len(img["src"]) < 120 else img["src"][:100] + "..."
        if not img["complete"] or img["naturalWidth"] == 0:
            problems.append(f"{docname}: broken image {src}")
            continue
        if not img["output"]:
            continue
        shown_small = img["shown"] and min(img["width"], img["height"]) <= MIN_FIGURE_PX
        if min(img["naturalWidth"], img["naturalHeight"]) <= MIN_FIGURE_PX or shown_small:
            problems.append(f"{docname}: empty figure {src}: natural {img['naturalWidth']}x{img['naturalHeight']}, "
                            f"shown {img['width']:.0f}x{img['height']:.0f} px")
        elif "error" in img:
            problems.append(f"{docname}: could not read pixels of {src}: {img['error']}")
        elif flat(img):
            problems.append(f"{docname}: empty figure {src}: a single flat colour "
                            f"({img['colours']} colours, luma std {img['std']:.2f})")
    for k, svg in enumerate(info["svgs"]):
        if (svg["shown"] and min(svg["width"], svg["height"]) <= MIN_FIGURE_PX) or svg["shapes"] == 0:
            problems.append(f"{docname}: empty SVG figure #{k + 1} in an output: "
                            f"{svg['width']:.0f}x{svg['height']:.0f} px, {svg['shapes']} shapes")
    for last_line in info["tracebacks"]:
        problems.append(f"{docname}: traceback in a cell output: {last_line}")
    if expect_outputs and info["outputs"] == 0:
        problems.append(f"{docname}: executed notebook page shows no cell output")
    problems += layout_problems(docname, driver.execute_script(LAYOUT_JS))
    return problems


def save_screenshot(driver, path: Path) -> None:
    """Whole page, not just the window: make the viewport as tall as the document, then capture.

    (Page.captureScreenshot's captureBeyondViewport alone sometimes returned a half-painted page,
    the sidebars missing and the article shifted, in about one run in four.)
    """
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    height = min(max(WINDOW[1], int(size["height"])), 16000)  # Chromium's texture limit is ~16k px
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WINDOW[0], "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:  # let the resized page lay out and paint: two frames, then a moment
        driver.execute_async_script(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 100)));")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


# ---------------------------------------------------------------------------------------------
# Tests.

@pytest.fixture(scope="module")
def chromium():
    drv = start_chromium()
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def book_url():
    if not (HTML / "index.html").exists():
        unavailable(f"no built book at {HTML}: " + BUILD_HINT)
    with serve(HTML) as url:
        yield url


@pytest.mark.parametrize("docname", toc_pages())
def test_book_page(docname, book_url, chromium):
    t0 = time.perf_counter()
    shot = SHOTS / (docname.replace("/", "-") + ".png")
    problems = check_page(chromium, book_url, docname, is_notebook(HTML, docname), screenshot=shot)
    print(f"{docname}: checked in {time.perf_counter() - t0:.2f} s, screenshot {shot}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_toc_pages_found_at_any_depth(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n      - file: a.ipynb\n"
        "        sections:\n          - file: a/deep\n          - url: https://example.org\n"
        "  - chapters:\n      - file: b.md\n      - glob: extra/*\n")
    (tmp_path / "extra").mkdir()
    for name in ("x.ipynb", "y.md", "z.txt"):
        (tmp_path / "extra" / name).write_text("")
    assert toc_pages(tmp_path / "_toc.yml") == ["intro", "a", "a/deep", "b", "extra/x", "extra/y"]


def _png(path: Path, blank: bool) -> None:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (240, 160), "white")
    if not blank:
        draw = ImageDraw.Draw(img)
        draw.line([(20, 140), (220, 140)], fill="black", width=2)
        draw.line([(20, 140), (20, 20)], fill="black", width=2)
        draw.line([(20, 130), (80, 90), (140, 100), (220, 30)], fill=(31, 119, 180), width=3)
        draw.text((100, 145), "x", fill="black")
    img.save(path)


def _page(body: str, title: str = "A page") -> str:
    return f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head><body>{body}</body></html>"


def _output(inner: str) -> str:
    return f'<div class="cell docutils container"><div class="cell_output docutils container">{inner}</div></div>'


def test_checker_flags_broken_blank_missing(tmp_path, chromium):
    site = tmp_path / "html"
    site.mkdir()
    _png(site / "good.png", blank=False)
    _png(site / "blank.png", blank=True)
    svg = '<svg width="200" height="100"><line x1="0" y1="0" x2="200" y2="100" stroke="black"/></svg>'
    pages = {  # docname: (html, expect_outputs, the substring its one problem must contain or None)
        "good": (_page(_output('<img src="good.png" alt="">') + _output(svg) + '<img src="good.png">'
                       + '<details><summary>hidden</summary>' + _output('<img src="good.png">') + '</details>'),
                 True, None),
        "broken": (_page('<p>text</p><img src="missing.png">'), False, "broken image missing.png"),
        "blank": (_page(_output('<img src="blank.png">')), True, "empty figure blank.png"),
        "traceback": (_page(_output('<div class="output traceback highlight-ipythontb"><pre>Traceback '
                                    "(most recent call last):\n  File x\nValueError: boom</pre></div>")),
                      True, "traceback in a cell output: ValueError: boom"),
        "no_outputs": (_page("<div class='cell'><pre>print(1)</pre></div>"), True, "no cell output"),
        "empty_svg": (_page(_output('<svg width="200" height="100"></svg>')), True, "empty SVG"),
        "absent": (None, False, "missing page, HTTP 404"),
    }
    for name, (html, _, _) in pages.items():
        if html is not None:
            (site / f"{name}.html").write_text(html)

    with serve(site) as url:
        found = {name: check_page(chromium, url, name, expect, screenshot=tmp_path / "shots" / f"{name}.png")
                 for name, (_, expect, _) in pages.items()}

    for name, (_, _, want) in pages.items():
        if want is None:
            assert found[name] == [], name
        else:
            assert len(found[name]) == 1 and want in found[name][0], (name, found[name])
    assert (tmp_path / "shots" / "good.png").stat().st_size > 0


def _table(cells: list[list[str]], width: str = "") -> str:
    style = f' style="width: {width}"' if width else ""
    return f"<table{style}>" + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells) + \
        "</table>"


def test_checker_flags_wide_tables_and_wrapped_number_cells(tmp_path, chromium):
    site = tmp_path / "html"
    site.mkdir()
    art = '<article class="bd-article" style="width: 600px; padding: 0 20px">{}</article>'
    full = '<div class="cell tag_full-width" style="width: 800px">{}</div>'
    text = "a long sentence that is free to wrap onto several lines in a narrow column " * 2
    pages = {  # docname: (article body, the substrings its problems must contain, in order)
        "fits": (_output(_table([["62.52<sub>0.21</sub>", '<span style="white-space: nowrap">[-0.61, +0.67]</span>',
                                  text]]))
                 + full.format(_output(_table([["1.00"] * 4], width="780px"))), []),
        "wide": (_output('<div style="overflow-x: auto">' + _table([["1.00"] * 4], width="700px") + "</div>"),
                 ["is 700 px wide, 100 px past the article (600 px)"]),
        "too_wide_even_full": (full.format(_output(_table([["1.00"] * 4], width="900px"))),
                               ["100 px past the theme's full width (800 px)"]),
        "wraps": (_output(_table([["82.95 ± 1.02", "[-10.94, +8.26]", "ok"]], width="90px")),
                  ["2 of 2 number cells wrap ('82.95 ± 1.02' on"]),
    }
    for name, (body, _) in pages.items():
        (site / f"{name}.html").write_text(_page(art.format(body)))
    with serve(site) as url:
        found = {name: check_page(chromium, url, name, True) for name in pages}
    for name, (_, want) in pages.items():
        assert len(found[name]) == len(want) and all(w in p for w, p in zip(want, found[name])), (name, found[name])


# ---------------------------------------------------------------------------------------------
# The book's tables at the toy profile's size, laid out by the built book's own theme and CSS.

def _toy_tables() -> dict[str, tuple[str, bool]]:
    """name -> (HTML, in a full-width cell): calib's tables as the toy book prints them, at their widest."""
    import numpy as np
    import pandas as pd

    from calib import book as C
    g = np.random.default_rng(0)
    cols = ["Alpaca (↓)", "BoolQ", "Winogrande", "PIQA", "HellaSwag", "ARC-e", "ARC-c", "MMLU", "Avg.", "Δ"]
    idx = pd.MultiIndex.from_product([[C.label(x) for x in C.WORLD_SOURCES], ["original", "w/ Syn"]],
                                     names=["source", "data"])
    mean = pd.DataFrame(g.uniform(40, 99.99, (8, 10)), index=idx, columns=cols)
    mean["Alpaca (↓)"], mean["Δ"] = g.uniform(2, 9.99, 8), [np.nan, -11.23] * 4
    std = pd.DataFrame(g.uniform(5, 9.99, (8, 10)), index=idx, columns=cols)  # 500 items: std < 10 points
    std["Alpaca (↓)"] = g.uniform(0.5, 0.99, 8)
    table2 = C.styled(mean, std, lower=["Alpaca (↓)"], exclude=["Δ"], signed=["Δ"],
                      caption="World, Wanda at 60%: mean over 4 seeds; best in bold", spread="std over 4 seeds")
    by_source = pd.DataFrame(g.uniform(40, 99.99, (5, 4)), index=["SparseGPT", "Wanda", "DSnoT", "OWL", "Syn"],
                             columns=[C.label(x) for x in C.WORLD_SOURCES])
    sources = C.styled(by_source, by_source * 0 + 9.99, axis=1, caption="World, 60%: average accuracy (%), mean "
                       "over seeds; best source per method in bold", spread="std over 4 seeds")
    claim = "Wanda at 60%: self-generated from pretrain (DCLM) data minus that data, mean over sources and prefixes"
    rows = [{"comparison": claim, "metric": m, "effect": -123.45, "CI": "98.3%: [-128.06, -110.20]",
             "CI half-width": 19.13, "MDE (80% power)": 18.77, "n": "4 vs 2 seeds x 3,500 items on 1,359 facts",
             "paper": 0.37 if m == "accuracy" else "every prefix beats the original data; 1-4 tokens best",
             "outcome": "Contradicted (p = 0.001 (Holm, 3 parts; unadjusted < 0.001))",
             "for ±0.5 points it would take": "out of reach: the knowledge base has 1,968 facts to ask about; with "
                                              "all of them and 20x the seeds the half-width would be ±2.06"}
            for m in ("accuracy", "log-score")]
    verdict = C.verdict_table(pd.DataFrame(rows * 4), "Verdict: effects with 95% CIs")
    return {"Table 2 block": (table2.to_html(), True), "method x source": (sources.to_html(), False),
            "verdict": (verdict, False)}


def test_toy_size_tables_fit_the_built_books_pages(tmp_path, book_url, chromium):
    """styled() and verdict_table() at the toy book's widest, in a page of the built book: none may
    overflow or wrap a number, so a bigger profile cannot break the layout the smoke book passes."""
    page = HTML / "book" / "table2_synthetic.html"
    if not page.exists():
        unavailable(f"no built chapter at {page}: " + BUILD_HINT)
    src = page.read_text()
    start, end = src.index('<article class="bd-article">'), src.index("</article>")
    cell = '<div class="cell{} docutils container"><div class="cell_output docutils container">' \
           '<div class="output text_html">{}</div></div></div>'
    body = "".join(cell.format(" tag_full-width" if wide else "", html) for html, wide in _toy_tables().values())
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    for d in ("_static", "_images"):
        if (HTML / d).exists():
            (site / d).symlink_to(HTML / d)
    intro = "<p>" + "A chapter opens with its text, so its tables start below the page's contents. " * 12 + "</p>"
    (site / "book" / "toy.html").write_text(src[:start] + '<article class="bd-article"><section><h1>The toy '
                                            'book\'s tables</h1>' + intro * 2 + body + "</section>" + src[end:])
    with serve(site) as url:
        problems = check_page(chromium, url, "book/toy", True, screenshot=SHOTS / "toy-size-tables.png")
    assert problems == []


def test_table2_chapter_opens_with_its_figure(book_url, chromium):
    """The chapter's first cell output is the figure of its claim (self-generated minus original)."""
    chromium.get(f"{book_url}/book/table2_synthetic.html")
    first = chromium.execute_script(
        "const o = document.querySelector('article .cell_output'); "
        "return o ? {img: !!o.querySelector('img'), text: o.innerText.trim().slice(0, 80)} : null;")
    assert first and first["img"], f"the first output of the Table 2 chapter is not a figure: {first}"
