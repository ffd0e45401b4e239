"""`make screenshots`: the main screens with demo data, as PNGs in docs/screenshots/.

A fresh SQLite database in a temporary folder is prepared with the documented commands
(`taktflow db upgrade`, `taktflow deploy FORMS WORKFLOWS`, `taktflow user seed`), a few demo
instances are started, the app is served on a free port and Debian's chromium (through
Playwright, at 1280x800) takes:

- inbox.png                   olga's task inbox (/tasks)
- form-out-of-tolerance.png   olga measuring a first article well out of tolerance (full page)
- approvals.png               mia's approvals (/approvals)
- instance.png                a first-article instance waiting for quality's review

The data is the same on every run (only the dates shown differ). Console errors on any of
the pages are printed and make the command fail, after all shots are written.

    python tests/e2e/screenshots.py [--out DIR] [--forms DIR] [--workflows DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from e2e_support import VIEWPORT, LiveServer, chromium_executable, launch_chromium, log_in

ROOT = Path(__file__).resolve().parents[2]
USERS = "seed_data/users.yaml"
OPERATOR = ("olga", "olga-operator")
MANAGER = ("mia", "mia-manager")
#: The demo workflows have no manager or supervisor lane (first_article's review is for
#: quality, which mia does not hold), so the approvals shot needs one request of its own. It is
#: deployed only into the screenshot database.
SCRAP_APPROVAL = """\
process: scrap_approval
name: Scrap approval
description: A supervisor decides on scrap an operator reported (screenshot demo only).
lanes: [operator, supervisor]
steps:
  - task: Report scrap
    lane: operator
  - task: Approve scrap
    lane: supervisor
    instructions: "Order {{ order_id }}: scrap {{ scrap_qty }} parts ({{ reason }})?"
"""


def say(message: str) -> None:
    print(f"screenshots: {message}", flush=True)


def run_cli(env: dict[str, str], *args: str) -> None:
    say("taktflow " + " ".join(args))
    done = subprocess.run(
        [sys.executable, "-m", "taktflow.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"screenshots: `taktflow {' '.join(args)}` failed")


def demo_data(app: Any) -> dict[str, Any]:
    """Start the demo instances; the ids the shots need."""
    from taktflow.app import task_forms, workflow_engine
    from taktflow.errors import Conflict

    with app.app_context():
        engine = workflow_engine()
        engine.deploy_text("scrap_approval.yaml", SCRAP_APPROVAL, actor="screenshots")
        engine.start("machine_order", {"order_id": "PO-1001", "qty": 120}, actor="paul")
        measure = engine.start(
            "first_article", {"order_id": "PO-1001", "nominal_mm": 25.0}, actor="paul"
        )["ready_tasks"][0]["task_id"]
        engine.start("machine_order", {"order_id": "PO-1002", "qty": 80}, actor="paul")
        # A first article 0.035 mm off: graded "review", so quality's review is active.
        review = engine.start("first_article", {"order_id": "PO-1002", "nominal_mm": 12.0})
        task_id = review["ready_tasks"][0]["task_id"]
        measured = {
            "measured_mm": "12.035",
            "gauge_id": "G-104",
            "out_of_tolerance_note": "Light chatter marks on the face.",
        }
        try:  # through the form's validation, as the task page submits it
            task_forms().submit(task_id, measured, actor="olga", check_password=None, strict=False)
        except Conflict:  # forms not deployed (--forms ''): the data as it is
            engine.complete_task(task_id, {**measured, "measured_mm": 12.035}, actor="olga")
        scrap = engine.start(
            "scrap_approval",
            {
                "order_id": "PO-1002",
                "part": "Shaft 12 mm",
                "scrap_qty": 6,
                "reason": "chatter marks after a tool change",
            },
        )
        engine.complete_task(
            scrap["ready_tasks"][0]["task_id"], {"reported_by": "olga"}, actor="olga"
        )
        view = engine.instance(review["instance_id"], history=False)
        assert view["ready_tasks"] and view["ready_tasks"][0]["lane"] == "quality", view
    return {"measure_task": measure, "review_instance": review["instance_id"]}


class Shooter:
    def __init__(self, browser: Any, base_url: str, out: Path) -> None:
        self.browser = browser
        self.base_url = base_url
        self.out = out
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.written: list[Path] = []

    def page_as(self, username: str, password: str) -> Any:
        context = self.browser.new_context(
            base_url=self.base_url, viewport=VIEWPORT, reduced_motion="reduce"
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.on(
            "console",
            lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: {msg.text}"),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        log_in(page, username, password)
        return page

    def shoot(self, page: Any, name: str, *, full_page: bool = False) -> None:
        path = self.out / name
        page.screenshot(path=path, animations="disabled", full_page=full_page)
        self.written.append(path)
        say(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        page.context.close()

    def inbox(self) -> None:
        say("inbox: olga at /tasks")
        page = self.page_as(*OPERATOR)
        page.goto("/tasks")
        page.wait_for_selector("#tasks tbody tr")
        self.shoot(page, "inbox.png")

    def form(self, task_id: str) -> None:
        say("form: olga measures a first article out of tolerance")
        page = self.page_as(*OPERATOR)
        page.goto(f"/tasks/{task_id}")
        if page.locator("#f-measured_mm").count() == 0:
            self.warn("the task page has no #f-measured_mm field: shot taken without a value")
        else:
            page.fill("#f-gauge_id", "G-104")
            page.fill("#f-measured_mm", "25.31")
            verdict = page.locator("#f-measured_mm-verdict")
            try:
                verdict.filter(has_text="out of tolerance").wait_for(timeout=3_000)
            except Exception:  # noqa: BLE001 - the shot is still worth having
                self.warn("#f-measured_mm-verdict did not say 'out of tolerance'")
        # The whole page (1280 wide): the form with the verdict and the note it asks for.
        self.shoot(page, "form-out-of-tolerance.png", full_page=True)

    def approvals(self) -> None:
        say("approvals: mia at /approvals")
        page = self.page_as(*MANAGER)
        page.goto("/approvals")
        if page.locator("[data-task-id]").count() == 0:
            self.warn("nothing waits on mia's approvals page")
        self.shoot(page, "approvals.png")

    def instance(self, instance_id: int) -> None:
        say(f"instance: mia at /instances/{instance_id}")
        page = self.page_as(*MANAGER)
        page.goto(f"/instances/{instance_id}")
        page.wait_for_selector("body[data-bpmn]")
        if page.get_attribute("body", "data-bpmn") != "rendered":
            self.warn("the instance diagram did not render")
        self.shoot(page, "instance.png")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        say(f"WARNING: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/screenshots", help="where the PNGs go")
    parser.add_argument("--forms", default="forms", help="form folder to deploy ('' for none)")
    parser.add_argument("--workflows", default="workflows", help="workflow folder to deploy")
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = parser.parse_args(argv)

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("screenshots: playwright is missing: run `make install`") from None

    from taktflow.app import create_app

    executable = chromium_executable()
    if executable is None:
        raise SystemExit("screenshots: chromium is missing (Debian: apt-get install chromium)")
    out = (ROOT / args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="taktflow-screenshots-"))
    url = f"sqlite:///{work / 'taktflow.db'}"
    settings = {"database_url": url, "env": "development", "instance_path": str(work / "inst")}
    env = {
        **os.environ,
        "TAKTFLOW_DATABASE_URL": url,
        "TAKTFLOW_ENV": "development",
        "TAKTFLOW_INSTANCE_PATH": settings["instance_path"],
    }
    say(f"database {url}")
    server = None
    try:
        run_cli(env, "db", "upgrade")
        run_cli(env, "deploy", *filter(None, [args.forms, args.workflows]))
        run_cli(env, "user", "seed", USERS)
        app = create_app(settings)
        say("starting demo instances")
        ids = demo_data(app)
        server = LiveServer(app)
        say(f"serving on {server.url}; chromium {executable}")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright, executable)
            shooter = Shooter(browser, server.url, out)
            shooter.inbox()
            shooter.form(ids["measure_task"])
            shooter.approvals()
            shooter.instance(ids["review_instance"])
            browser.close()
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nwritten:")
    for path in shooter.written:
        print(f"  {path}")
    for message in shooter.warnings:
        print(f"warning: {message}")
    if shooter.errors:
        print("console errors:", *shooter.errors, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
