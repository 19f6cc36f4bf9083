"""The HTML site: built from the golden smoke records of Tables 1, 2, 4 and 8 (copied, so
nothing trains), opened from disk in a real headless Chromium.

Table 1 is given one row that never ran and one whose cell failed, so that the marks for
both are seen. The browser tests skip, with one line saying why, where Chromium is absent.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.cli import main
from harness.store.records import RunStore
from harness.tables.cells import table_cells
from harness.tables.paper import get_table
from tests.browser import Browser, find_chromium

GOLDEN = Path(__file__).parent / "golden"
TABLES = ("table1", "table2", "table4", "table8")
NOT_RUN, FAILED = "mnist.conv_s4", "mnist.topk_s4"  # Table 1 rows made to show the marks
WIDTHS = {"desktop": 1280, "phone": 390}


def _break_table1(runs: Path) -> None:
    """Drop two Table 1 records; leave the error file a failed cell leaves for one."""
    store = RunStore(runs)
    for config in table_cells(get_table("table1"), "smoke", 1):
        if config["variant"] in (NOT_RUN, FAILED):
            store.path(config).unlink()
        if config["variant"] == FAILED:
            store.error_path(config).write_text(
                "stamp\nTraceback ...\nRuntimeError: out of memory\n"
            )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    for table in TABLES:
        shutil.copytree(GOLDEN / "runs" / table, root / "runs" / table)
    _break_table1(root / "runs")
    out = root / "site"
    assert (
        main(["site", "--profile", "smoke", "--runs-dir", str(root / "runs"), "--out", str(out)])
        == 0
    )
    return out


def _expected_rows(table: str) -> list[str]:
    return pd.read_csv(GOLDEN / "reports" / f"{table}.csv")["row"].tolist()


def test_the_site_is_self_contained(site: Path) -> None:
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == ["index.html", *(f"{t}.html" for t in TABLES)]  # every table with records
    for page in site.glob("*.html"):
        text = page.read_text()
        links = re.findall(r'(?:src|href)="([^"]*)"', text)
        assert links and not [u for u in links if re.match(r"[a-z]+://", u)], page.name
        for link in links:  # every file a page names is in the site
            target = link.split("#")[0]
            assert not target or target == "data:," or (site / target).is_file(), (page, link)
    assert (site / "static" / "sort.js").stat().st_size < 4000  # small, ours, no library


def test_a_page_marks_failed_and_missing_cells_and_shows_provenance(site: Path) -> None:
    text = (site / "table1.html").read_text()
    assert text.count('<tr class="failed">') == 1 and text.count('<tr class="not-run">') == 1
    assert "RuntimeError: out of memory" in text  # the failed cell's error, on hover
    for part in ("Chosen by us", "Provenance", "env.git_commit", "b6cdf0ae31c1", "started_at"):
        assert part in text, part


def test_site_refuses_an_empty_runs_folder_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["site", "--runs-dir", str(tmp_path / "none"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no records under" in err and "run a table first" in err
    assert main(["site", "--profile", "smok", "--runs-dir", str(tmp_path)]) == 2
    assert "did you mean 'smoke'?" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_run_writes_the_site_after_the_run(tmp_path: Path, capsys) -> None:
    shutil.copytree(GOLDEN / "runs" / "table4", tmp_path / "runs" / "table4")  # all done
    out = tmp_path / "reports"
    assert main(["run", "table4", "--profile", "smoke", "--runs-dir", str(tmp_path / "runs"),
                 "--out", str(out), "--site"]) == 0  # fmt: skip
    assert f"wrote {out / 'site' / 'index.html'}" in capsys.readouterr().out
    assert "Table 4" in (out / "site" / "table4.html").read_text()


CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chromium = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()
    assert chromium.process.returncode is not None  # no Chromium outlives the tests


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium)")
class TestInChromium:
    @pytest.mark.parametrize("table", TABLES)
    def test_every_row_and_claim_is_on_the_page(self, browser, site, table) -> None:
        browser.open((site / f"{table}.html").as_uri(), WIDTHS["desktop"])
        rows = browser.eval(
            "[...document.querySelector('#results + .scroll tbody').rows]"
            ".map(r => r.querySelector('td.label').textContent)"
        )
        assert rows == _expected_rows(table)
        claims = browser.eval("document.querySelectorAll('#claims ~ .scroll .verdict').length")
        assert claims == len(get_table(table).claims)
        assert browser.console_errors() == []

    def test_the_index_links_every_table_and_claim(self, browser, site) -> None:
        browser.open((site / "index.html").as_uri(), WIDTHS["desktop"])
        links = browser.eval("[...document.querySelectorAll('tbody a')].map(a => a.href)")
        for table in TABLES:
            assert (site / f"{table}.html").as_uri() in links
        claims = sum(len(get_table(t).claims) for t in TABLES)
        assert sum(h.endswith("#claims") for h in links) == claims

    def test_clicking_a_header_sorts_the_rows(self, browser, site) -> None:
        browser.open((site / "table1.html").as_uri(), WIDTHS["desktop"])
        read = (
            "[...document.querySelector('#results + .scroll tbody').rows]"
            ".map(r => r.cells[1].dataset.sort ?? '')"
        )
        before = browser.eval(read)
        header = "#results + .scroll th:nth-child(2) button"  # our accuracy
        browser.click(header)
        up = browser.eval(read)
        values = [float(v) for v in up if v]
        assert values == sorted(values) and up[len(values) :] == [""] * (len(up) - len(values))
        browser.click(header)
        down = [float(v) for v in browser.eval(read) if v]
        assert down == sorted(values, reverse=True) and sorted(up) == sorted(before)
        assert browser.eval("document.querySelector('#results + .scroll th:nth-child(2)')"
                            ".getAttribute('aria-sort')") == "descending"  # fmt: skip

    @pytest.mark.parametrize("width", WIDTHS)
    @pytest.mark.parametrize("page", ["index", *TABLES])
    def test_images_load_and_nothing_errs(self, browser, site, page, width) -> None:
        browser.open((site / f"{page}.html").as_uri(), WIDTHS[width], mobile=width == "phone")
        images = browser.eval(
            "[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
        )
        assert all(done and w > 0 for _, done, w in images), images
        assert len(images) == (page != "index")  # each table's plot
        assert browser.console_errors() == []
        # the page fits the window; wide tables scroll inside their own box
        assert browser.eval("document.documentElement.scrollWidth") <= WIDTHS[width]

    @pytest.mark.parametrize("width", WIDTHS)
    def test_screenshots_are_not_blank(self, browser, site, width, tmp_path) -> None:
        browser.open((site / "table1.html").as_uri(), WIDTHS[width], mobile=width == "phone")
        shot = browser.screenshot(tmp_path / f"table1-{width}.png")
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.shape[1] == WIDTHS[width] and pixels.shape[0] > 900
        assert pixels.std() > 20  # text, tables and the plot, not one flat colour
        assert (pixels < 128).mean() > 0.01  # dark ink on a fair share of the page
