"""The built site in a real browser: Debian's Chromium, driven by Playwright, on every page of the book.

What a reader would notice: a page that throws errors or misses files, mathematics left as TeX,
a table printed as text, a figure without its caption or its description, a solution shown before
it is asked for (or not opening), a Colab link to nowhere, a search that does not find a chapter,
and a page that scrolls sideways on a phone.

The site is conftest's ``book_build`` (the build tests/test_book.py checks, made once per run), or
any built site: ``ROPELIB_SITE=_build/html pytest tests/test_browser.py`` (e.g. after
``python -m ropelib.course build --offline``). It is served over HTTP from this process; nothing
else is fetched: MathJax, which the default build loads from a CDN, is answered from
``node_modules/mathjax/es5`` (``npm install mathjax@3``, or ``ROPELIB_MATHJAX=DIR``), and every
other request off the site is blocked and listed in the summary.

The browser: ``ROPELIB_CHROMIUM`` (a path; set by .ci/run, and then a browser that does not start is
a failure), else ``chromium`` or ``chromium-browser`` on the PATH. Playwright never downloads one.
Without Playwright, a browser or MathJax the tests concerned are skipped, with the reason.

Screenshots of a few pages (desktop and phone width) and ``summary.json`` (pages, formulas, figures,
tables, solutions seen) are written to ``ROPELIB_SCREENSHOTS`` (default ``_build/screenshots``).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.book, pytest.mark.browser]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # a current phone, in CSS pixels
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000  # per page; generous for a loaded 2-core runner
# The pages photographed: the introduction, a theory chapter, a training chapter.
SCREENSHOT_PAGES = ["book/intro", "notebooks/03_axial_rope", "notebooks/09_training_a_vit"]
MATHJAX_CDN = re.compile(r"^https?://cdn\.jsdelivr\.net/npm/mathjax@3[^/]*/es5/")
# Console errors that come from the theme's own scripts on every page, whatever the content. Each
# is listed in summary.json under "tolerated" when it occurs; remove an entry once it is fixed.
TOLERATED = {
    # sphinx-thebe 0.3.1 writes its inline settings (`const THEBE_JS_URL = ...`) twice into every
    # page's head; the second copy throws. Harmless here: the book has no thebe (live code) button.
    "thebe": re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
}
SUMMARY: dict = {}


def _warn_skip(reason: str):
    """Skip, and say so in the warnings summary as well as in ``-rs``'s list."""
    warnings.warn(f"browser tests skipped: {reason}", pytest.PytestWarning, stacklevel=2)
    pytest.skip(reason)


def _toc_pages() -> list[str]:
    """Every page of the book, in reading order, as in _toc.yml (``book/intro``, ``notebooks/...``)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))
    for part in toc.get("parts", [toc]):
        walk(part.get("chapters", []))
    return pages


def _repository() -> tuple[str, str]:
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return repository["url"].rstrip("/").removesuffix(".git"), repository.get("branch", "main")


def _screenshots() -> Path:
    folder = Path(os.environ.get("ROPELIB_SCREENSHOTS") or ROOT / "_build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- the browser, the site, MathJax --------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _warn_skip("Playwright is not installed (pip install -r requirements.txt)")
    explicit = os.environ.get("ROPELIB_CHROMIUM")
    executable = explicit or next(filter(None, map(shutil.which, ["chromium", "chromium-browser"])), None)
    if not executable:
        _warn_skip("no Chromium: neither ROPELIB_CHROMIUM nor `chromium` on the PATH "
                   "(Debian: apt-get install chromium; .ci/run installs it where it can)")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as error:  # noqa: BLE001 - any failure to start means no browser
        playwright.stop()
        message = f"Chromium at {executable} does not start: {str(error).splitlines()[0]}"
        if explicit:
            pytest.fail(f"{message} (ROPELIB_CHROMIUM asks for it)")
        _warn_skip(message)
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture(scope="session")
def site(request) -> Path:
    """The built site's ``_build/html``: ``ROPELIB_SITE``, else the run's own build of the book."""
    given = os.environ.get("ROPELIB_SITE")
    html = Path(given).resolve() if given else request.getfixturevalue("book_build").html
    if not (html / "search.html").exists():
        pytest.fail(f"no built site in {html}" + ("" if given else " (the book build failed: see test_book)"))
    return html


@pytest.fixture(scope="session")
def server(site):
    """The site over HTTP (search and MathJax need it), on a free port of 127.0.0.1."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


def _mathjax(site: Path) -> tuple[Path | None, str]:
    """Where MathJax 3 comes from for this site: (a local es5 folder to answer CDN requests with, or
    None) and why not, where it cannot be had."""
    page = next((p for p in site.rglob("*.html") if 'class="math' in p.read_text(errors="replace")), None)
    if page is None:
        return None, ""
    source = re.search(r'<script[^>]*src="([^"]*tex-mml-chtml\.js)[^"]*"', page.read_text())
    if source is None:
        return None, f"{page} has maths but loads no MathJax"
    if not MATHJAX_CDN.match(source.group(1)):  # an offline build: MathJax is on the site itself
        return None, ""
    for folder in filter(None, [os.environ.get("ROPELIB_MATHJAX"), ROOT / "node_modules" / "mathjax" / "es5"]):
        if (Path(folder) / "tex-mml-chtml.js").exists():
            return Path(folder), ""
    if os.environ.get("ROPELIB_MATHJAX"):
        pytest.fail(f"ROPELIB_MATHJAX={os.environ['ROPELIB_MATHJAX']} holds no tex-mml-chtml.js")
    return None, ("no MathJax 3 here and the site loads it from a CDN, which these tests do not reach: "
                  f"run `npm install mathjax@3` in {ROOT} (or set ROPELIB_MATHJAX)")


class Reader:
    """Opens pages of the site in fresh browser contexts (a first-time reader each time), answering
    MathJax's CDN requests from a local copy and blocking everything else off the site."""

    def __init__(self, browser, base: str, mathjax: Path | None):
        self.browser, self.base, self.mathjax = browser, base, mathjax
        self.blocked: Counter = Counter()

    def _route(self, route):
        url = route.request.url
        match = MATHJAX_CDN.match(url)
        if match and self.mathjax is not None:
            file = self.mathjax / url[match.end():].split("?")[0].split("#")[0]
            if file.is_file():
                return route.fulfill(path=str(file))
        self.blocked[url.split("?")[0]] += 1
        return route.abort()

    def open(self, path: str, viewport: dict, phone: bool = False):
        """(context, page, problems, tolerated): problems collects console errors, page errors and
        failed requests to the site, each a string; tolerated, the names of TOLERATED errors seen."""
        options = {"viewport": viewport}
        if phone:
            options.update(device_scale_factor=2, is_mobile=True, has_touch=True)
        context = self.browser.new_context(**options)
        context.route(re.compile(r"^(?!" + re.escape(self.base) + ")https?://"), self._route)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        tolerated: list[str] = []

        def console(message):
            if message.type != "error":
                return
            url = message.location.get("url", "")
            if not url.startswith(self.base) and url.split("?")[0] in self.blocked:
                return  # a blocked request off the site: counted in self.blocked
            if url == self.base + "favicon.ico":
                return  # the browser asks for it by itself; the site has none
            add(f"console: {message.text} ({url.removeprefix(self.base)})")

        def add(text):
            name = next((name for name, pattern in TOLERATED.items() if pattern.search(text)), None)
            (tolerated if name else problems).append(name or text)

        def response(response):
            if response.status >= 400 and response.url.startswith(self.base) and \
                    response.url != self.base + "favicon.ico":
                problems.append(f"HTTP {response.status}: {response.url.removeprefix(self.base)}")

        page.on("console", console)
        page.on("pageerror", lambda error: add(f"page error: {error}"))
        page.on("response", response)
        page.on("requestfailed", lambda r: r.url.startswith(self.base) and problems.append(
            f"request failed: {r.url.removeprefix(self.base)} ({r.failure})"))
        page.goto(self.base + path, wait_until="load")
        return context, page, problems, tolerated


def _wait_for_mathjax(page) -> bool:
    """Wait until MathJax has typeset the page (True), or say that the page loads none (False)."""
    if not page.evaluate("() => !!document.querySelector('span.math, div.math')"):
        return False
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.evaluate("() => MathJax.startup.promise.then(() => true)")
    return True


# What a page holds, read in the page after MathJax: formulas, tables, figures, links, solutions.
INSPECT = r"""() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const text = el => el.textContent.replace(/\s+/g, ' ').trim();
  const math = [...document.querySelectorAll('span.math, div.math')];
  const figures = [...article.querySelectorAll('figure')].map(f => ({
    id: f.id,
    number: text(f.querySelector('figcaption .caption-number') || document.createElement('i')),
    caption: text(f.querySelector('figcaption .caption-text') || document.createElement('i')),
    images: [...f.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt') || '',
                                                      loaded: i.complete && i.naturalWidth > 0})),
  }));
  return {
    title: document.title,
    math: math.length,
    formulas: document.querySelectorAll('mjx-container').length,
    untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => text(m).slice(0, 100)),
    // MathJax's TeX errors, and undefined macros (which it prints in red)
    tex_errors: [...document.querySelectorAll('mjx-merror, mjx-assistive-mml mtext[mathcolor="red"]')]
                .map(e => text(e.closest('.math') || e).slice(0, 100)),
    tables: article.querySelectorAll('table').length,
    raw_tables: [...article.querySelectorAll('p, li, dd')].filter(
        // a delimiter row, also after the typographer turned its --- into dashes
        p => /\|\s*:?(-{3,}|[\u2013\u2014]+)\s*:?\|/.test(p.textContent))
                  .map(p => text(p).slice(0, 120)),
    figures: figures,
    loose_images: [...article.querySelectorAll('img')].filter(i => !i.closest('figure'))
                  .filter(i => (i.getAttribute('src') || '').includes('_images/'))
                  .map(i => ({src: i.getAttribute('src'), alt: i.getAttribute('alt') || ''})),
    broken_images: [...article.querySelectorAll('img')].filter(i => !(i.complete && i.naturalWidth > 0))
                  .map(i => i.getAttribute('src')),
    colab: [...document.querySelectorAll('a[href*="colab.research.google.com"]')].map(a => a.href),
    solutions: [...article.querySelectorAll('div.solution')].map(s => s.id),
  };
}"""

# Does the page itself scroll sideways, and if so, which elements stick out (outside any element
# that clips or scrolls its own overflow, such as code blocks and wide tables)?
SIDEWAYS = r"""(screen) => {
  // a page too wide may be zoomed out to fit (innerWidth grows): measure against the screen
  const width = Math.min(window.innerWidth, screen), doc = document.documentElement;
  const culprits = [];
  if (doc.scrollWidth > width + 1) {
    for (const el of document.body.querySelectorAll('*')) {
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.right <= width + 1) continue;
      if (box.left <= 1 && box.right >= doc.scrollWidth - 1) continue;  // stretched to the page, not its cause
      let inside = getComputedStyle(el).position === 'fixed';  // off-canvas panels do not scroll the page
      for (let a = el.parentElement; !inside && a && a !== document.body; a = a.parentElement) {
        const style = getComputedStyle(a);
        inside = style.overflowX !== 'visible' || style.position === 'fixed';
      }
      if (inside) continue;
      if (culprits.some(c => c.el.contains(el))) continue;
      culprits.push({el, text: `<${el.tagName.toLowerCase()}${el.id ? ' id=' + el.id : ''}` +
        `${el.className && typeof el.className === 'string' ? ' class="' + el.className + '"' : ''}> ` +
        `right edge at ${Math.round(box.right)} px: ${el.textContent.replace(/\s+/g, ' ').trim().slice(0, 60)}`});
    }
  }
  return {scroll_width: doc.scrollWidth, inner_width: window.innerWidth, culprits: culprits.slice(0, 8).map(c => c.text)};
}"""


def _solutions(page, ids: list[str]) -> list[str]:
    """Open every solution of the page: hidden before the click, shown after. Returns the problems."""
    problems = []
    for ident in ids:
        solution = page.locator(f'[id="{ident}"]')
        body = [part for part in solution.locator(":scope > :not(.admonition-title)").all()
                if part.text_content().strip()]
        if not body:
            problems.append(f"{ident}: an empty solution")
            continue
        shown = [part for part in body if part.is_visible()]
        if shown:
            problems.append(f"{ident}: visible before the click: {shown[0].text_content().strip()[:80]!r}")
            continue
        button = solution.locator(":scope > .admonition-title .toggle-button, :scope > .admonition-title").first
        button.click()
        try:
            body[0].wait_for(state="visible", timeout=5_000)
        except Exception:  # noqa: BLE001 - reported below
            pass
        hidden = [part for part in body if not part.is_visible()]
        if hidden:
            problems.append(f"{ident}: still hidden after the click: {hidden[0].text_content().strip()[:80]!r}")
    return problems


@pytest.fixture(scope="session")
def visits(browser, site, server):
    """Every page of the book, read once at desktop width (everything but the sideways check, the
    solutions clicked open) and once at phone width (the sideways check)."""
    mathjax, mathjax_missing = _mathjax(site)
    reader = Reader(browser, server, mathjax)
    shots = _screenshots()
    for old in shots.glob("*.png"):
        old.unlink()
    pages = [page for page in _toc_pages() if (site / f"{page}.html").exists()]
    missing = [page for page in _toc_pages() if page not in pages]
    chosen = [p for p in SCREENSHOT_PAGES if p in pages] or pages[:1]
    found = {}
    start = time.monotonic()
    for name in pages:
        seen = {"problems": []}
        try:
            context, page, problems, tolerated = reader.open(f"{name}.html", DESKTOP)
            seen["mathjax"] = _wait_for_mathjax(page) if not mathjax_missing else False
            seen.update(page.evaluate(INSPECT))
            if name in chosen:
                page.screenshot(path=str(shots / f"{name.replace('/', '_')}-desktop.png"))
            seen["solution_problems"] = _solutions(page, seen["solutions"])
            if name in chosen and seen["figures"]:  # the first figure, with the solutions open
                page.locator("article figure").first.evaluate("f => f.scrollIntoView()")
                page.screenshot(path=str(shots / f"{name.replace('/', '_')}-desktop-figure.png"))
            seen["problems"], seen["tolerated"] = problems, tolerated
            context.close()
            context, page, problems, tolerated = reader.open(f"{name}.html", PHONE, phone=True)
            if not mathjax_missing:
                _wait_for_mathjax(page)
            seen["phone"] = page.evaluate(SIDEWAYS, PHONE["width"])
            if name in chosen:
                page.screenshot(path=str(shots / f"{name.replace('/', '_')}-phone.png"))
            seen["problems"] += [f"(phone) {p}" for p in problems]
            seen["tolerated"] += tolerated
            context.close()
        except Exception as error:  # noqa: BLE001 - one page's failure is reported, the others still read
            seen["problems"].append(f"could not be read: {type(error).__name__}: {str(error).splitlines()[0]}")
            seen["failed"] = True
        found[name] = seen
    readable = [s for s in found.values() if not s.get("failed")]
    SUMMARY.update({
        "site": str(site),
        "pages": len(found),
        "pages_missing_from_the_site": missing,
        "formulas": sum(s["formulas"] for s in readable),
        "math_elements": sum(s["math"] for s in readable),
        "figures": sum(len(s["figures"]) for s in readable),
        "tables": sum(s["tables"] for s in readable),
        "solutions": sum(len(s["solutions"]) for s in readable),
        "colab_links": sum(len(s["colab"]) for s in readable),
        "per_page": {name: {key: (len(s[key]) if isinstance(s.get(key), list) else s.get(key))
                            for key in ("formulas", "figures", "tables", "solutions")} for name, s in found.items()},
        "tolerated_console_errors": dict(Counter(t for s in readable for t in s.get("tolerated", []))),
        "blocked_requests_off_the_site": dict(reader.blocked),
        "mathjax": str(mathjax) if mathjax else (mathjax_missing or "served by the site"),
        "screenshots": sorted(p.name for p in shots.glob("*.png")),
        "seconds_reading_pages": round(time.monotonic() - start, 1),
    })
    _write_summary()
    yield {"pages": found, "mathjax_missing": mathjax_missing, "reader": reader}
    _write_summary()


def _write_summary():
    (_screenshots() / "summary.json").write_text(json.dumps(SUMMARY, indent=1) + "\n")
    print("\nbrowser tests:", json.dumps({k: v for k, v in SUMMARY.items() if k != "per_page"}))


def _report(failures: list[str], what: str):
    assert not failures, f"{len(failures)} {what}:\n" + "\n".join(failures)


# --- the checks ----------------------------------------------------------------------------------

def test_every_page_loads_without_errors(visits):
    pages = visits["pages"]
    assert len(pages) >= 3, f"only {len(pages)} pages of the book were found in the site"
    if not os.environ.get("ROPELIB_SITE"):  # the run's own build has every page of _toc.yml
        assert not SUMMARY["pages_missing_from_the_site"], SUMMARY["pages_missing_from_the_site"]
    _report([f"{name}: {problem}" for name, seen in pages.items() for problem in seen["problems"]],
            "errors while loading the pages")


def test_mathematics_is_typeset(visits):
    if visits["mathjax_missing"]:
        _warn_skip(visits["mathjax_missing"])
    pages = {name: seen for name, seen in visits["pages"].items() if not seen.get("failed")}
    failures = []
    for name, seen in pages.items():
        if seen["untypeset"]:
            failures.append(f"{name}: {len(seen['untypeset'])} of {seen['math']} formulas left as TeX, "
                            f"first {seen['untypeset'][0]!r}")
        elif seen["formulas"] < seen["math"]:
            failures.append(f"{name}: {seen['formulas']} formulas typeset for {seen['math']} in the source")
        failures += [f"{name}: TeX error in {error!r}" for error in seen["tex_errors"]]
    assert sum(seen["formulas"] for seen in pages.values()) > 0, "no formula anywhere in the book"
    _report(failures, "pages with mathematics not typeset")


def test_tables_are_tables(visits):
    failures = [f"{name}: a Markdown table printed as text: {raw!r}"
                for name, seen in visits["pages"].items() if not seen.get("failed") for raw in seen["raw_tables"]]
    _report(failures, "tables printed as text")
    assert sum(seen.get("tables", 0) for seen in visits["pages"].values()) > 0, "no table anywhere in the book"


def test_figures_have_numbered_captions_and_alt_text(visits):
    failures = []
    for name, seen in visits["pages"].items():
        for figure in seen.get("figures", []):
            where = f"{name}: figure {figure['id'] or '(no id)'}"
            if not re.fullmatch(r"Fig\. \d+(\.\d+)*", figure["number"]):
                failures.append(f"{where}: caption number {figure['number']!r}")
            if len(figure["caption"]) < 10:
                failures.append(f"{where}: caption {figure['caption']!r}")
            if not figure["images"]:
                failures.append(f"{where}: no image")
            for image in figure["images"]:
                if len(image["alt"].strip()) < 10:
                    failures.append(f"{where}: alt text {image['alt']!r} on {image['src']}")
                if not image["loaded"]:
                    failures.append(f"{where}: image {image['src']} did not load")
        for image in seen.get("loose_images", []):
            failures.append(f"{name}: a cell's image outside a figure (no caption): {image['src']}")
        for source in seen.get("broken_images", []):
            failures.append(f"{name}: image {source} did not load")
    _report(failures, "figure problems")


def test_solutions_are_hidden_until_clicked(visits):
    pages = visits["pages"]
    assert sum(len(seen.get("solutions", [])) for seen in pages.values()) > 0, "no exercise solution in the book"
    _report([f"{name}: {problem}" for name, seen in pages.items() for problem in seen.get("solution_problems", [])],
            "solutions that do not hide and open")


def test_colab_links_open_this_repositorys_notebooks(visits):
    url, branch = _repository()
    prefix = "https://colab.research.google.com/github/" + url.removeprefix("https://github.com/") + f"/blob/{branch}/"
    failures = []
    for name, seen in visits["pages"].items():
        links = seen.get("colab", [])
        for link in links:
            if not link.startswith(prefix):
                failures.append(f"{name}: {link} is not under {prefix}")
            elif not (ROOT / link.removeprefix(prefix).split("?")[0].split("#")[0]).is_file():
                failures.append(f"{name}: {link} opens {link.removeprefix(prefix)}, which is not in the repository")
        stem = Path(name).name
        if name.startswith("notebooks/") and not any(link.split("?")[0].endswith(f"/{stem}.ipynb") for link in links):
            failures.append(f"{name}: no Colab link to its own notebook (links: {links})")
    _report(failures, "Colab link problems")


def _search_words(site: Path, chapters: list[str]) -> dict[str, str]:
    """For each chapter, a word of its prose (code and formulas left out: what a reader would type)
    that the search index holds for that chapter alone, the chapter's most frequent such word:
    {chapter: word}."""
    import snowballstemmer  # Sphinx's stemmer; the site's search.js stems with the same Porter rules

    text = (site / "searchindex.js").read_text()
    index = json.loads(text[text.index("(") + 1:text.rindex(")")])
    docs = {name: i for i, name in enumerate(index["docnames"])}
    owners = {}
    for table in ("terms", "titleterms"):
        for term, where in index[table].items():
            owners.setdefault(term, set()).update(where if isinstance(where, list) else [where])
    stem = snowballstemmer.stemmer("porter").stemWord
    words = {}
    for chapter in chapters:
        if chapter not in docs:
            continue
        body = (site / f"{chapter}.html").read_text()
        body = re.sub(r"<script.*?</script>|<style.*?</style>|<pre.*?</pre>|<code.*?</code>"
                      r"|<span class=\"math.*?</span>|<div class=\"math.*?</div>|<[^>]+>", " ",
                      body[body.find("<article"):body.rfind("</article>")], flags=re.S)
        counts = Counter(w for w in re.findall(r"[a-z]{7,}", body.lower()))
        unique = [w for w in counts if owners.get(stem(w)) == {docs[chapter]}]
        if unique:
            words[chapter] = min(unique, key=lambda w: (-counts[w], w))
    return words


def test_search_finds_a_word_of_each_chapter(visits, site, server):
    chapters = [name for name in visits["pages"] if name.startswith("notebooks/")]
    words = _search_words(site, chapters)
    SUMMARY["search_words"] = words
    failures = [f"{name}: no word of it is indexed for it alone" for name in chapters if name not in words]
    reader = visits["reader"]
    for chapter, word in words.items():
        context, page, problems, _ = reader.open(f"search.html?q={word}", DESKTOP)
        try:
            page.wait_for_function("() => (document.querySelector('#search-results p.search-summary') || {})"
                                   ".textContent", timeout=TIMEOUT_MS)
            found = page.eval_on_selector_all("#search-results ul.search li a",
                                              "links => links.map(a => a.getAttribute('href'))")
        finally:
            context.close()
        if not any(link.split("?")[0].split("#")[0] == f"{chapter}.html" for link in found):
            failures.append(f"searching {word!r} does not find {chapter} (results: {found[:5]})")
        failures += [f"search.html?q={word}: {problem}" for problem in problems]
    _report(failures, "search problems")


def test_no_sideways_scrolling_at_phone_width(visits):
    failures = []
    for name, seen in visits["pages"].items():
        phone = seen.get("phone")
        if phone is None:
            continue
        zoomed = phone["inner_width"] > PHONE["width"] + 1  # the phone zooms out a page too wide for it
        if zoomed or phone["scroll_width"] > PHONE["width"] + 1:
            failures.append(f"{name}: {phone['scroll_width']} px wide on a {PHONE['width']} px screen"
                            + (f" (zoomed out to {phone['inner_width']} px)" if zoomed else "")
                            + "; sticking out: " + "; ".join(phone["culprits"]))
    _report(failures, "pages that scroll sideways on a phone")
