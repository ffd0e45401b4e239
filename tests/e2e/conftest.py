"""Browser tests: the real app over real HTTP, driven by Debian's chromium through Playwright.

- `live_server`: this test's `app` (tests/conftest.py: its own migrated SQLite file, or the
  worker's emptied PostgreSQL schema) served by waitress on 127.0.0.1 and a free port, in a
  background thread. The test and the server share the app object and so the database:
  data made through `backend` is what the browser sees, and what the browser does is read
  back through `backend`. Port 0 and per-test databases keep xdist workers apart.
- `browser`: one chromium per xdist worker (session scope); `context`/`page`: a fresh
  browser context per test (no cookies left over), 1280x800, base URL = the live server.
- `page` fails the test at teardown when the page logged a console error or threw an
  uncaught error ("every page works without console errors"); `page_errors.allow(regex)`
  accepts an expected one (e.g. the browser's note about a 4xx response).
- `login("name")` logs in through the real form (CSRF token included).

No chromium or no playwright: skipped locally, a failure under TAKTFLOW_STRICT=1 (CI).
Playwright's own browser downloads are never used (never run `playwright install`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import VIEWPORT, LiveServer, chromium_executable, launch_chromium, log_in

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # reported per test module below (skip locally, fail in CI)
    sync_playwright = None  # type: ignore[assignment]

ROOT_CONFTEST = Path(__file__).parents[1] / "conftest.py"
#: Playwright waits up to this long for an element or a navigation (its default is 30 s).
ACTION_TIMEOUT_MS = 10_000


def missing_service(config: pytest.Config, reason: str) -> None:
    """tests/conftest.py's missing_service: skip locally, fail under TAKTFLOW_STRICT=1.

    Conftest files outside packages all import as `conftest`, so the root one is reached
    through the plugin manager, where pytest registers it under its path.
    """
    root = config.pluginmanager.get_plugin(str(ROOT_CONFTEST))
    assert root is not None, f"{ROOT_CONFTEST} is not loaded"
    root.missing_service(reason)


class _NoPlaywright(pytest.Module):
    def collect(self) -> list[Any]:
        missing_service(
            self.config,
            "the playwright package is not installed (make install; never `playwright install`)",
        )
        return []


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    if sync_playwright is None:
        return _NoPlaywright.from_parent(parent, path=module_path)
    return None


# ---------------------------------------------------------------------- server and data
@pytest.fixture
def live_server(app: Any) -> Iterator[LiveServer]:
    server = LiveServer(app)
    yield server
    server.stop()


class Backend:
    """Test data made and checked in the served app's own context (same engine, same DB)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.passwords: dict[str, str] = {}

    def _engine(self) -> Any:
        from taktflow.app import workflow_engine

        return workflow_engine(self.app)

    def user(
        self,
        name: str,
        roles: list[str],
        password: str | None = None,
        display_name: str | None = None,
    ) -> dict:
        """A user who can log in (password default: `<name>-pass-1`)."""
        from taktflow.app import accounts

        password = password or f"{name}-pass-1"
        self.passwords[name] = password
        with self.app.app_context():
            return accounts(self.app).create_user(name, roles, password, display_name=display_name)

    def deploy(self, name: str, text: str) -> list[dict]:
        """Deploy one file's text: a workflow (.yaml, .bpmn, .dmn by `name`) or a form."""
        with self.app.app_context():
            return self._engine().deploy_text(name, text)

    def deploy_paths(self, *paths: str | Path) -> list[dict]:
        """Deploy files and folders as one batch, e.g. the demo's forms/ and workflows/."""
        with self.app.app_context():
            return self._engine().deploy_paths([str(p) for p in paths])

    def start(self, process_id: str, data: dict | None = None) -> int:
        with self.app.app_context():
            return self._engine().start(process_id, data or {})["instance_id"]

    def tasks(self, instance_id: int | None = None) -> list[dict]:
        with self.app.app_context():
            return self._engine().tasks(instance_id)

    def task(self, instance_id: int) -> dict:
        """The one ready task of an instance."""
        [found] = self.tasks(instance_id)
        return found

    def complete(self, task_id: str, data: dict | None = None, actor: str | None = None) -> dict:
        with self.app.app_context():
            return self._engine().complete_task(task_id, data or {}, actor=actor)

    def instance(self, instance_id: int) -> dict:
        with self.app.app_context():
            return self._engine().instance(instance_id)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run anything else in the app context, e.g. backend.call(lambda: task_forms()...)."""
        with self.app.app_context():
            return fn()


@pytest.fixture
def backend(app: Any) -> Backend:
    return Backend(app)


#: An operator step, then a manager's decision: the smallest workflow with an approval.
RELEASE_CHECK = """\
process: release_check
name: Release check
lanes: [operator, manager]
steps:
  - task: Record setup
    lane: operator
    instructions: "Set up the machine for order {{ order_id }}."
  - task: Approve release
    lane: manager
    instructions: "Release order {{ order_id }} to production?"
"""


@pytest.fixture
def release_check(backend: Backend) -> str:
    """RELEASE_CHECK deployed; its process id."""
    backend.deploy("release_check.yaml", RELEASE_CHECK)
    return "release_check"


# ---------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """One headless chromium per test session (per xdist worker)."""
    executable = chromium_executable()
    if executable is None:
        missing_service(
            request.config, "chromium is not installed (Debian: apt-get install chromium)"
        )
    assert sync_playwright is not None
    driver = sync_playwright().start()
    try:
        launched = launch_chromium(driver, executable)
        yield launched
        launched.close()
    finally:
        driver.stop()


@pytest.fixture
def context(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    ctx = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    ctx.set_default_timeout(ACTION_TIMEOUT_MS)
    yield ctx
    ctx.close()


class PageErrors:
    """Console errors and uncaught exceptions of a page; allow() accepts expected ones."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def watch(self, page: Any) -> None:
        page.on(
            "console",
            lambda msg: (
                msg.type == "error"
                and self.seen.append(f"console error at {page.url}: {msg.text} {msg.location}")
            ),
        )
        page.on("pageerror", lambda exc: self.seen.append(f"uncaught error at {page.url}: {exc}"))

    def unexpected(self) -> list[str]:
        return [e for e in self.seen if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(context: Any, page_errors: PageErrors) -> Iterator[Any]:
    """A page of the live server; the test fails if the page logs a console error."""
    opened = context.new_page()
    page_errors.watch(opened)
    yield opened
    opened.close()
    if unexpected := page_errors.unexpected():
        pytest.fail("the browser reported errors:\n" + "\n".join(unexpected), pytrace=False)


@pytest.fixture
def login(page: Any, backend: Backend) -> Callable[..., Any]:
    """login(name, password=None): log in through /login; lands on the user's start page."""

    def run(name: str, password: str | None = None) -> Any:
        log_in(page, name, password or backend.passwords[name])
        return page

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed browser test gets a screenshot and the page's HTML next to its report."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None and not page.is_closed():
        folder = item.funcargs.get("tmp_path")
        if folder is not None:
            try:
                page.screenshot(path=folder / "failure.png", full_page=True)
                (folder / "failure.html").write_text(page.content(), encoding="utf-8")
                report.sections.append(
                    ("browser", f"{page.url}\nscreenshot and HTML: {folder}/failure.png, .html")
                )
            except Exception as exc:  # noqa: BLE001 - a report must not fail on this
                report.sections.append(("browser", f"no screenshot: {exc}"))
    return report
