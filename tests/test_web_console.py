"""The console in a real headless Chromium (Playwright) against a real `brickyard serve` on 127.0.0.1.

Every page visited is screenshotted under the test's tmp_path and checked for console errors, failed requests,
unexpected error statuses and form controls without a label.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from web_seed import Seeded, seed

from brickyard.server.app import create_app
from brickyard.server.runner import BackgroundServer

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = os.environ.get("BRICKYARD_SCREENSHOTS")
README_SHOTS = {"usage", "keys", "sql", "evaluation", "case", "playground", "agent", "trace"}
"""Pages `make screenshots` writes to $BRICKYARD_SCREENSHOTS (docs/console) for the README."""
UNLABELLED = """() => Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter(el => el.tagName === 'BUTTON'
      ? !(el.innerText.trim() || el.getAttribute('aria-label'))
      : !((el.labels && el.labels.length) || el.getAttribute('aria-label')))
  .map(el => el.outerHTML.slice(0, 120))"""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def server(seeded: Seeded) -> Iterator[BackgroundServer]:
    background = BackgroundServer(create_app(seeded.workspace)).start()
    yield background
    background.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing. Fix: make setup (installs Debian's chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@dataclass
class Watch:
    """A page and what went wrong on it: console errors, page errors, failed requests, error statuses."""

    page: Any
    folder: Path
    problems: list[str] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)

    def check(self, name: str) -> None:
        """Screenshot the page, then assert nothing went wrong on it and every control has a label."""
        self.page.wait_for_load_state("networkidle")
        self.page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)
        if DOCS and name in README_SHOTS:  # `make screenshots`: the README's images (the top of the page)
            self.page.evaluate("window.scrollTo(0, 0)")
            self.page.screenshot(path=str(Path(DOCS) / f"{name}.png"))
        assert self.problems == [], f"{name}: {self.problems}"
        origin = self.page.evaluate("() => location.origin")
        loaded = self.page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
        assert [u for u in loaded if not u.startswith(origin)] == [], f"{name}: loaded from elsewhere"
        assert self.page.evaluate(UNLABELLED) == [], f"{name}: controls without a label"


@pytest.fixture
def open_page(browser: Any, server: BackgroundServer, tmp_path: Path) -> Iterator[Any]:
    contexts = []

    def start() -> Watch:
        context = browser.new_context(base_url=server.url, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        watch = Watch(page, tmp_path)

        def console(message: Any) -> None:
            expected = any(f"status of {code} " in message.text for code in watch.allowed)
            if message.type == "error" and not expected:
                watch.problems.append(f"console: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda e: watch.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: watch.problems.append(f"failed: {r.url} {r.failure}"))

        def status(response: Any) -> None:
            if response.status >= 400 and response.status not in watch.allowed:
                watch.problems.append(f"{response.status}: {response.url}")

        page.on("response", status)
        return watch

    yield start
    for context in contexts:
        context.close()


def sign_in(watch: Watch, key: str, *, keyboard: bool = False) -> None:
    page = watch.page
    page.goto("/")
    assert page.url.endswith("/login")
    if keyboard:  # the key field has the focus; Enter submits
        page.keyboard.type(key)
        page.keyboard.press("Enter")
    else:
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/usage")


def test_usage_budgets_and_payload_search(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    page.goto("/login")
    watch.check("sign-in")
    sign_in(watch, seeded.admin, keyboard=True)
    assert page.evaluate("() => Chart.getChart(document.getElementById('spend-chart')).data.datasets.length") >= 1
    budgets = page.locator("table.budgets")
    assert budgets.get_by_text("key team-a").is_visible() and budgets.get_by_text("endpoint det").is_visible()
    assert page.locator("table.budgets meter").count() == 2
    page.get_by_label("Group by").select_option("key")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**by=key**")
    labels = page.evaluate(
        "() => Chart.getChart(document.getElementById('calls-chart')).data.datasets.map(d => d.label)"
    )
    assert {"team-a", "team-b"} <= set(labels) and "(none)" in labels  # the evaluation's calls had no key
    page.get_by_label("Search requests and answers").fill("alpha")
    page.get_by_role("button", name="Search").click()
    page.locator("#payloads table.payloads").get_by_text("alpha answer").wait_for()
    assert "bravo" not in page.locator("#payloads").inner_text()
    watch.check("usage")


def test_a_team_key_sees_its_own_usage_and_no_admin_page(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.team_b)
    page.goto("/usage?by=key")
    labels = page.evaluate(
        "() => Chart.getChart(document.getElementById('calls-chart')).data.datasets.map(d => d.label)"
    )
    assert labels == ["team-b"] and "team-a" not in page.content()
    assert page.get_by_role("link", name="Keys").count() == 0
    watch.check("usage-team-b")
    page.keyboard.press("Tab")  # keyboard only: the skip link first, then the pages
    assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "SQL"
    page.keyboard.press("Enter")
    page.wait_for_url("**/sql")
    page.go_back()
    watch.allowed.add(403)
    response = page.goto("/keys")
    assert response is not None and response.status == 403
    assert page.get_by_role("alert").inner_text().startswith("this page is for admin keys")
    watch.check("keys-refused")


def test_a_forged_cross_site_post_is_refused(open_page: Any, seeded: Seeded, server: BackgroundServer) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.admin)
    # a page on another origin (localhost is another site than 127.0.0.1) posts a form to the console
    evil = server.url.replace("127.0.0.1", "localhost")
    watch.allowed.update({403, 404})
    page.route(
        f"{evil}/evil",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f'<form method="post" action="{server.url}/keys"><input name="name" value="forged">'
            '<input name="scopes" value="*"></form><script>document.forms[0].submit()</script>',
        ),
    )
    page.goto(f"{evil}/evil")
    page.wait_for_load_state("networkidle")
    assert seeded.workspace.keys.get("forged") is None
    # the same request from a script on the console's own page, but without the token
    page.goto("/usage")
    status = page.evaluate(
        "async () => (await fetch('/keys', {method: 'POST', body: new URLSearchParams({name: 'forged2', "
        "scopes: '*'})})).status"
    )
    assert status == 403 and seeded.workspace.keys.get("forged2") is None


def test_create_and_revoke_a_key(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.admin)
    page.get_by_role("link", name="Keys").click()
    watch.check("keys")
    page.get_by_label("Name", exact=True).fill("browser-made")
    page.get_by_label("Endpoints (comma-separated; * for all, agent:NAME)").fill("det")
    page.get_by_label("May run SQL").check()
    page.get_by_label("Budget (USD, e.g. 50/month or 5/day)").fill("5/day")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret of browser-made").input_value()
    assert secret.startswith("bky-")
    made = seeded.workspace.keys.get("browser-made")
    assert made is not None and made.sql and made.budget_usd == 5.0
    watch.check("key-created")
    page.get_by_role("button", name="Revoke browser-made").click()
    page.get_by_text("Key browser-made is revoked").wait_for()
    revoked = seeded.workspace.keys.get("browser-made")
    assert revoked is not None and not revoked.active
    watch.check("key-revoked")


def test_sql_estimate_run_page_reload_download_and_cancel(open_page: Any, seeded: Seeded, tmp_path: Path) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.team_a)
    page.get_by_role("link", name="SQL").click()
    editor = page.get_by_role("textbox", name="SQL editor")  # CodeMirror, over the form's (hidden) textarea
    query = page.locator("textarea#sql")
    editor.fill("SELECT id,")
    page.get_by_role("button", name="ai_query", exact=True).click()  # a hint, inserted at the cursor
    assert query.input_value().startswith("SELECT id,ai_query('endpoint', prompt")
    editor.fill("SELECT id, ai_cl")
    page.keyboard.press("Control+Space")  # completions: the AI functions (and the warehouse's tables)
    page.get_by_role("option", name=re.compile("ai_classify")).first.wait_for()
    page.keyboard.press("Escape")
    editor.fill("SELECT * FROM tick")
    page.keyboard.press("Control+Space")
    page.get_by_role("option", name=re.compile("tickets")).first.wait_for()  # the warehouse's own tables
    page.keyboard.press("Escape")
    editor.fill("SELECT id, ai_query('flaky', body, failOnError => false) AS answer FROM tickets ORDER BY id")
    assert query.input_value().endswith("FROM tickets ORDER BY id")
    page.get_by_role("button", name="Estimate").click()
    estimate = page.locator("#estimate")
    estimate.get_by_text("model calls").wait_for()
    assert re.search(r"\b120 model calls", estimate.inner_text())
    page.get_by_role("button", name="Run").click()
    page.get_by_text("120 row(s)").wait_for()
    assert "job=" in page.url
    grid = page.get_by_role("region", name="Results")
    assert grid.locator("tbody tr").count() == 50 and grid.locator("td.row-error").count() == 7
    watch.check("sql")
    page.get_by_role("button", name="Next page").click()
    page.get_by_text("page 2 of 3").wait_for()
    page.reload()  # the job survives a reload (its id is in the address)
    page.get_by_text("120 row(s)").wait_for()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    saved = tmp_path / "results.csv"
    download.value.save_as(saved)
    assert len(saved.read_text().splitlines()) == 121
    editor = page.get_by_role("textbox", name="SQL editor")
    editor.fill("SELECT count(*) FROM tickets a, tickets b, tickets c, tickets d, tickets e, tickets f")
    page.get_by_role("button", name="Run").click()
    page.get_by_role("button", name="Cancel").click()
    page.locator(".status-cancelled").wait_for()
    watch.check("sql-cancelled")


def test_open_an_evaluation_drill_into_a_case_label_and_export(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.admin)
    page.get_by_role("link", name="Evaluations").click()
    watch.check("evals")
    page.get_by_role("link", name=seeded.run_id).click()
    comparison = page.locator("#comparison").inner_text()
    assert "good/zero-shot" in comparison and "mid/zero-shot" in comparison
    points = page.evaluate("() => Chart.getChart(document.getElementById('pareto-chart')).data.datasets.length")
    assert points >= 3  # an interval per candidate, the candidates, the front
    watch.check("evaluation")
    page.get_by_label("Show").select_option("disagreements")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**show=disagreements**")
    rows = page.locator("table.cases tbody tr")
    assert rows.count() >= 1
    for i in range(rows.count()):  # every row shown has outputs that differ
        cells = rows.nth(i).locator("td")
        assert cells.nth(3).inner_text() != cells.nth(4).inner_text()
    case_link = rows.first.locator("a")
    case_id = case_link.inner_text()
    case_link.click()
    assert page.get_by_role("heading", name="good/zero-shot").is_visible()
    assert page.get_by_role("heading", name="mid/zero-shot").is_visible()
    watch.check("case")
    page.get_by_label("Output judged").select_option("mid/zero-shot")
    page.get_by_label("Verdict").select_option("fail")
    page.get_by_label("Comment").fill("looks wrong to me")
    page.get_by_role("button", name="Save label").click()
    page.get_by_text("Label saved").wait_for()
    page.get_by_role("link", name=re.compile("evaluation")).first.click()
    page.get_by_role("button", name=re.compile("Export labels")).click()
    heading = page.get_by_role("heading", name=re.compile(r"Saved reviews v\d+")).inner_text()
    version = int(heading.rsplit("v", 1)[1])
    cases = {c.id: c for c in seeded.workspace.eval_store.cases("reviews", version)}
    assert cases[case_id].metadata["human_verdict"] == "fail"
    assert cases[case_id].metadata["human_comment"] == "looks wrong to me"
    watch.check("exported")


def test_compare_two_endpoints_in_the_playground_and_save_the_comparison(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.team_a)
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Prompt").fill("hello there from the browser")
    page.get_by_label("Endpoint 1").select_option("det")
    page.get_by_label("Endpoint 2").select_option("flaky")
    page.get_by_role("button", name="Compare").click()
    for endpoint, answer in (("det", "echo: hello there from the browser"), ("flaky", "fine:")):
        column = page.locator(f"article[data-endpoint='{endpoint}']")
        column.get_by_text("served by").wait_for()
        assert column.locator("pre").inner_text().startswith(answer)
        assert re.search(r"\d+ in / \d+ out tokens · \$\d", column.locator(".figures").inner_text())
    watch.check("playground")
    page.get_by_label("Expected answer from").select_option("det")
    page.get_by_role("button", name="Save comparison").click()
    version = int(page.get_by_role("heading", name=re.compile(r"Saved playground v\d+")).inner_text().rsplit("v", 1)[1])
    (case,) = seeded.workspace.eval_store.cases("playground", version)[-1:]
    assert case.input == "hello there from the browser" and case.expected.startswith("echo: hello there")
    assert set(case.metadata["outputs"]) == {"det", "flaky"}
    watch.check("playground-saved")


def test_agents_versions_side_by_side_a_run_and_its_trace(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.team_a)
    page.get_by_role("link", name="Agents").click()
    watch.check("agents")
    page.get_by_role("link", name="sentiment").click()
    changed = page.locator("table.diff tr.diff-changed, table.diff tr.diff-added")
    assert "overall sentiment" in changed.first.inner_text()
    watch.check("agent")
    page.get_by_label("Input").fill("case 7: a slow but moving film")
    page.get_by_role("button", name="Run sentiment").click()
    page.locator("section.ran").wait_for()
    assert page.locator("section.ran pre").inner_text().strip() in ('"pos"', '"neg"', "pos", "neg")
    page.locator("section.ran a").click()
    assert page.get_by_text("case 7: a slow but moving film").first.is_visible()
    assert page.locator("table.steps tbody tr").count() >= 1
    watch.check("trace")


def test_launch_a_sweep_and_follow_it_to_the_new_run(open_page: Any, seeded: Seeded) -> None:
    watch = open_page()
    page = watch.page
    sign_in(watch, seeded.admin)
    page.goto("/evals")
    page.get_by_label("Agent to evaluate").select_option("sentiment")
    page.get_by_label("Evaluation set").select_option("reviews")
    page.get_by_label(re.compile("^Candidates")).fill("good/zero-shot, mid/zero-shot")
    page.get_by_role("button", name="Launch sweep").click()
    page.locator("#eval-job section.job").wait_for()
    page.wait_for_url("**/evals?job=*")  # the job's address, so a reload finds it
    page.reload()
    link = page.get_by_role("link", name=re.compile("open evaluation"))
    link.wait_for(timeout=30_000)
    assert "good/zero-shot" in page.get_by_label("Progress log").inner_text()
    watch.check("evaluation-launched")
    link.click()
    assert page.get_by_role("heading", name=re.compile("Evaluation of")).is_visible()
    assert seeded.run_id not in page.url
