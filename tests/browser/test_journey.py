"""The newcomer's whole path in a real browser on a real worker (issue 21).

sign-up → Scope → Select with a compute plan → upload (one file per split, with a licence)
→ trials → fine-tune (the form starts from the plan) → evaluate → export → deploy → a
rating round (blind) → share link → a viewer. Along the way it asserts what the newcomer
stumbled on: every link an owner can follow answers without 4xx/5xx, each finished page
says what to do next, the share twins open anonymously with nothing that changes or
downloads, a viewer's pages have no enabled write control, rating is blind until done,
no page logs a console error, and the wizard's sidebar is at the top left at 1400 and
390 px. The tiny test model keeps the jobs short (about a minute of work in all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import cast
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Dataset, Job, JobKind, JobStatus, Project
from tests.browser.conftest import TIMEOUT_MS, log_in
from tests.factories import PASSWORD, UserFactory
from tests.integration.conftest import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT_MS = 120_000
SHOTS = Path("/tmp/journey")
WIDTHS = (1400, 390)
ROWS = 4
FT_STEPS = 4
EXAMPLES = [
    ("A: The printer on floor 3 is jammed. B: I'll call facilities.", "Printer 3 is jammed."),
    ("A: Can we move the meeting to Friday? B: Friday works.", "Meeting moved to Friday."),
    ("A: My invoice shows two charges. B: I'll refund one.", "Double charge refunded."),
]
# Links that change state or leave the app are not "followed" by the crawler.
SKIP_LINK = re.compile(r"/accounts/logout/|/admin/|/api/")


def _rows(prefix: str, n: int) -> str:
    people = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
    lines = []
    for i in range(n):
        a, b = people[i % 10], people[(i + 3) % 10]
        lines.append(
            json.dumps(
                {
                    "dialogue": f"{a}: Did you book the room for {prefix} meeting {i}? "
                    f"{b}: Yes, room {i + 2} at {9 + i % 8} o'clock.",
                    "summary": f"{b} booked room {i + 2} for {prefix} meeting {i}.",
                }
            )
        )
    return "\n".join(lines) + "\n"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href and not href.startswith(("mailto:", "javascript:", "data:")):
                self.hrefs.append(href)


def crawl(page: Page, start: str, *, within: str, limit: int = 400) -> dict[str, int]:
    """Follow every link from `start` whose path begins with `within` (GET, with the
    page's cookies); returns each URL's status. Query strings count as distinct pages."""
    origin = "{0.scheme}://{0.netloc}".format(urlparse(start))
    seen: dict[str, int] = {}
    queue = [start]
    while queue and len(seen) < limit:
        url = queue.pop(0)
        if url in seen:
            continue
        response = page.request.get(url, max_redirects=5)
        seen[url] = response.status
        kind = response.headers.get("content-type", "")
        if response.status >= 400 or "text/html" not in kind:
            continue
        parser = _Links()
        parser.feed(response.text())
        for href in parser.hrefs:
            target = urldefrag(urljoin(url, href))[0]
            parsed = urlparse(target)
            if f"{parsed.scheme}://{parsed.netloc}" != origin or SKIP_LINK.search(parsed.path):
                continue
            if parsed.path.startswith(within) and target not in seen:
                queue.append(target)
    return seen


class Watch:
    """Console errors and uncaught exceptions of every page it watches."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Page) -> Page:
        page.on(
            "console",
            lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page


def check_sidebar(page: Page, name: str) -> None:
    """The wizard's sidebar is at the top left at both widths, also when the page has been
    scrolled to the bottom (a sticky sidebar once followed the scroll halfway down long
    pages). Measured in page coordinates; full-page screenshots are kept for a look."""
    SHOTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
        boxes = page.evaluate(
            """() => Object.fromEntries(["main", ".wizard-nav", ".step-body"].map(sel => {
                 const r = document.querySelector(sel).getBoundingClientRect();
                 return [sel, {x: r.left + window.scrollX, y: r.top + window.scrollY,
                               width: r.width}];
               }))"""
        )
        nav, body, main = boxes[".wizard-nav"], boxes[".step-body"], boxes["main"]
        assert nav["x"] - main["x"] < 40, (name, width, nav, main)  # the content's left edge
        assert nav["y"] < 320, (name, width, nav)  # under the top bar and any message
        if width >= 1000:  # side by side, both starting at the top
            assert abs(nav["y"] - body["y"]) < 30, (name, width, nav, body)
            assert nav["x"] + nav["width"] <= body["x"], (name, width)
        else:  # stacked: the sidebar first
            assert nav["y"] < body["y"], (name, width, nav, body)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.set_viewport_size({"width": 1400, "height": 900})


def shots(page: Page, name: str) -> None:
    """Full-page screenshots at both widths, for a person to look at."""
    SHOTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


def no_write_controls(page: Page, name: str) -> None:
    """Every form that would change something has no enabled field or button."""
    enabled = page.evaluate(
        """() => {
          const out = [];
          for (const form of document.querySelectorAll("form")) {
            if (form.matches(".logout")) continue;
            const method = (form.getAttribute("method") || "get").toLowerCase();
            const writes = method === "post" || form.hasAttribute("hx-post");
            if (!writes) continue;
            for (const el of form.querySelectorAll("input, select, textarea, button")) {
              if (el.type === "hidden" || el.disabled || el.closest("fieldset[disabled]")) continue;
              if (el.type === "button" && el.hasAttribute("hx-get")) continue;  // reads only
              out.push(el.outerHTML.slice(0, 120));
            }
          }
          for (const el of document.querySelectorAll("[hx-post], [hx-delete], [hx-put]")) {
            if (!el.closest("form") && !el.disabled) out.push(el.outerHTML.slice(0, 120));
          }
          return out;
        }"""
    )
    assert enabled == [], (name, enabled)


def no_controls(page: Page, name: str) -> None:
    """A share page: nothing that can change or download. (A GET form that only opens
    another read-only page, such as picking trials to compare, is allowed.)"""
    assert page.locator("form:not([method=get])").count() == 0, name
    assert page.locator("[hx-post], [hx-delete], [hx-put]").count() == 0, name
    reading = "form[method=get] *, [form=compare-form]"
    assert page.locator(f"button:not([disabled]):not({reading})").count() == 0, name
    hrefs = page.locator("a[href]").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert not [h for h in hrefs if "download" in h or "/export/" in h], (name, hrefs)
    assert not [h for h in hrefs if h.startswith("/p/")], (name, hrefs)
    # Only the loss curves' smoothing slider is an enabled input: it changes the view only.
    enabled = "input:not([disabled]):not([type=range]), select:not([disabled])"
    inputs = page.locator(enabled)
    # The scorecard chart's metric picker and fields of reading-only GET forms.
    allowed = page.locator(f"#chart-metric, :is({enabled}):is({reading})")
    assert inputs.count() == allowed.count(), name


def wait_job(page: Page, live_id: str) -> None:
    expect(page.locator(f"#{live_id}")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_TIMEOUT_MS
    )


@pytest.fixture
def journey_context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


def test_the_newcomers_path_from_sign_up_to_a_viewer(
    browser: Browser,
    journey_context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    tiny_model: CatalogModel,
    tiny_folder: Path,
    shared_storage: Path,
    tmp_path: Path,
) -> None:
    base = live_server.url
    watch = Watch()
    page = watch.attach(journey_context.new_page())

    # --- sign up, create a project -------------------------------------------------------
    page.goto(f"{base}/accounts/signup/")
    expect(page.locator("#id_email").locator("xpath=..")).to_contain_text("Teammates can add you")
    page.fill("#id_username", "dana")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.fill("#id_name", "Meeting notes")
    page.get_by_role("button", name="Create project").click()
    project = Project.objects.get(name="Meeting notes")
    p = f"{base}/p/{project.slug}"

    # --- Scope: saving confirms -----------------------------------------------------------
    page.get_by_role("link", name="Continue: Define the use case").click()
    page.select_option("#id_task_type", "summarization")
    page.fill("#id_use_case", "Summarize a short workplace chat in one sentence for the log.")
    for i, (text, summary) in enumerate(EXAMPLES):
        page.fill(f"#id_ex-{i}-input", text)
        page.fill(f"#id_ex-{i}-output", summary)
    page.select_option("#id_success_metric", "rouge_1")
    expect(page.locator("#id_success_metric option[value=rouge_1]")).to_have_text("ROUGE-1 (0–1)")
    page.fill("#id_metric_target", "0.05")
    page.get_by_role("button", name="Save and continue").click()
    expect(page.locator(".messages")).to_contain_text("Saved “Define the use case”")
    check_sidebar(page, "select-model")

    # --- Select: the model, then a plan -------------------------------------------------
    page.check("#model-tiny")
    page.get_by_role("button", name="Use this model").click()
    expect(page.get_by_role("heading", name="Plan compute and memory")).to_be_visible()
    page.fill("#id_lora_r", "16")
    page.check("input[name=lora_targets][value=k_proj]")
    page.fill("#id_batch_size", "2")
    page.fill("#id_seq_len", "128")
    # Prompt-tuning settings show only when prompt tuning is the method.
    expect(page.locator("#id_num_virtual_tokens")).to_be_hidden()
    expect(page.locator("#id_lora_r")).to_be_visible()
    expect(page.get_by_test_id("verdict")).to_be_visible()
    check_sidebar(page, "plan")
    page.get_by_role("button", name="Save this plan and continue").click()

    # --- Prompt engineering: no dataset yet, the button leads to the upload form ----------
    expect(page.get_by_role("heading", name="Prompt engineering")).to_be_visible()
    page.get_by_role("link", name="Upload a dataset").first.click()
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible()
    train, dev, test = (
        tmp_path / n for n in ("chat.train.jsonl", "chat.dev.jsonl", "chat.test.jsonl")
    )
    train.write_text(_rows("weekly", 24))
    dev.write_text(_rows("daily", 4))
    test.write_text(_rows("monthly", 6))
    page.set_input_files("#id_file", str(train))
    page.locator("summary", has_text="several files").click()
    page.set_input_files("#id_validation_file", str(dev))
    page.set_input_files("#id_test_file", str(test))
    page.fill("#id_name", "Room bookings")
    page.fill("#id_licence", "CC BY 4.0")
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_test_id("split-counts")).to_contain_text("24 train · 4 validation · 6 test")
    expect(page.locator("#id_split_field")).to_have_value("split")
    shots(page, "staged")
    page.get_by_role("button", name="Save dataset").click()
    expect(page.get_by_test_id("licence")).to_have_text("CC BY 4.0")
    expect(page.get_by_test_id("next-step")).to_be_visible()
    shots(page, "dataset")
    dataset = Dataset.objects.get(project=project)
    assert dataset.split_counts == {"train": 24, "validation": 4, "test": 6}

    # --- trials -------------------------------------------------------------------------
    page.get_by_test_id("next-step").get_by_role("link", name="Prompt engineering").click()
    page.get_by_role("link", name="New template").click()
    page.fill("#id_name", "Summarize v1")
    page.get_by_role("button", name="Save template").click()
    trial_ids = []
    for tokens in ("8", "6"):
        page.goto(f"{p}/adapt/prompt/")
        page.select_option("#id_base_model", "tiny")
        page.fill("#id_n_rows", str(ROWS))
        page.fill("#id_shots", "0")
        page.fill("#id_max_new_tokens", tokens)
        expect(page.get_by_test_id("final-prompt")).to_be_visible()
        page.get_by_test_id("run-trial").click()
        page.wait_for_url(re.compile(r"/trials/\d+/$"))
        wait_job(page, "trial-live")
        expect(page.get_by_test_id("next-step")).to_be_visible()
        trial_ids.append(int(re.findall(r"/trials/(\d+)/$", page.url)[0]))
    assert "Summarize v1 v1" not in page.content()
    # The trial finished while the page was open: the next step offers marking it best.
    page.get_by_role("button", name="Mark this one as the best prompt").click()
    expect(page.get_by_text("★ current best")).to_be_visible()

    # --- fine-tune: the form starts from the plan ------------------------------------------
    page.goto(f"{p}/adapt/fine-tune/")
    expect(page.locator("#id_lora_r")).to_have_value("16")
    expect(page.locator("input[name=target_modules][value=k_proj]")).to_be_checked()
    expect(page.locator("#id_batch_size")).to_have_value("2")
    expect(page.locator("#id_max_seq_len")).to_have_value("128")
    expect(page.locator("#id_num_virtual_tokens")).to_be_hidden()
    check_sidebar(page, "finetune-step")
    page.fill("#id_max_steps", str(FT_STEPS))
    page.fill("#id_eval_every", "2")
    page.fill("#id_checkpoint_every", "0")
    page.get_by_test_id("start-training").click()
    page.wait_for_url(re.compile(r"/finetune/\d+/$"))
    wait_job(page, "ft-live")
    expect(page.get_by_test_id("schedule")).to_contain_text("Learning rate 2.0e-04")
    expect(page.get_by_test_id("next-step")).to_contain_text("Evaluate it")
    page.wait_for_function("() => window.Chart && Chart.getChart('curves')")
    # Straight segments between measured points, smoothing drawn over faint raw points.
    tensions = page.evaluate("() => Chart.getChart('curves').data.datasets.map(d => d.tension)")
    assert tensions == [0, 0, 0]
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"finetune-run-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    run = Job.objects.get(project=project, kind=JobKind.FINETUNE)
    assert run.params["lora_r"] == 16 and run.params["batch_size"] == 2
    candidate = CatalogModel.objects.get(trained_by_job=run)

    # --- evaluate ------------------------------------------------------------------------
    page.get_by_role("link", name="Evaluate it").click()
    check_sidebar(page, "evaluate-step")
    for box in page.locator("input[name=candidates]").all():
        box.uncheck()
    page.check("input[name=candidates][value='base:tiny']")
    page.check(f"input[name=candidates][value='model:{candidate.id}']")
    page.select_option("#id_split", "test")
    page.fill("#id_n_rows", str(ROWS))
    page.fill("#id_max_new_tokens", "6")
    page.get_by_test_id("run-evaluation").click()
    page.wait_for_url(re.compile(r"/evaluations/\d+/$"))
    expect(page.get_by_text("which this evaluation does not measure")).to_have_count(0)
    wait_job(page, "eval-live")
    expect(page.get_by_test_id("next-step")).to_be_visible()
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"scorecard-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})
    evaluation = Job.objects.get(project=project, kind=JobKind.EVALUATE)
    # The side by side opens on the baseline against the best other candidate.
    page.get_by_test_id("open-side-by-side").click()
    a = page.locator("#a").input_value() if page.locator("#a").count() else ""
    b = page.locator("#b").input_value() if page.locator("#b").count() else ""
    assert a != b
    page.goto(f"{p}/")
    expect(page.get_by_test_id("best-candidate")).to_contain_text("ROUGE-1")
    check_sidebar(page, "project")

    # --- export and deploy ---------------------------------------------------------------
    page.goto(f"{p}/integrate/deploy/")
    check_sidebar(page, "deploy-step")
    page.select_option("#id_base_model", candidate.slug)
    page.select_option("#id_dataset", str(dataset.id))
    page.check("input[name=kind][value=int8]")
    page.fill("#id_eval_rows", str(ROWS))
    page.fill("#id_max_new_tokens", "6")
    page.get_by_test_id("start-export").click()
    row = page.locator("table.tradeoff tr[data-kind=int8]")
    expect(row).to_be_visible(timeout=JOB_TIMEOUT_MS)
    row.get_by_test_id("deploy").click()
    expect(page.get_by_test_id("deployed")).to_be_visible()
    page.fill("input[name=name]", "journey")
    page.get_by_test_id("create-token").click()
    expect(page.get_by_test_id("copy-token")).to_be_visible()
    shots(page, "deploy-token")

    # --- a rating round: blind until done ----------------------------------------------------
    page.goto(f"{p}/adapt/align/")
    page.select_option("#id_trial_a", str(trial_ids[0]))
    page.select_option("#id_trial_b", str(trial_ids[1]))
    page.get_by_role("button", name="Start a rating round").click()
    page.wait_for_url(re.compile(r"/feedback/rounds/\d+/$"))
    round_url = page.url
    expect(page.get_by_test_id("blind-note")).to_be_visible()
    shots(page, "round-blind")
    expect(page.get_by_test_id("sources")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(f"Trial #{trial_ids[0]} ·")
    page.get_by_test_id("rate-link").click()
    expect(page.locator(".lead")).to_contain_text("stays hidden until you have rated every row")
    shots(page, "rate")
    progress = page.get_by_test_id("rate-progress")
    while "all done" not in progress.inner_text():
        page.keyboard.press("1")
        page.wait_for_timeout(200)
    page.goto(round_url)
    expect(page.get_by_test_id("sources")).to_contain_text(f"Trial #{trial_ids[0]}")
    shots(page, "round-revealed")

    # --- every link an owner can follow answers ---------------------------------------------
    statuses = crawl(page, f"{p}/", within=f"/p/{project.slug}/")
    statuses.update(crawl(page, f"{base}/jobs/", within="/jobs/", limit=20))
    bad = {url: status for url, status in statuses.items() if status >= 400}
    assert bad == {}, bad
    assert len(statuses) > 40, len(statuses)

    # --- a share link: the twins, anonymously, with no controls -------------------------------
    page.goto(f"{p}/members/")
    page.fill("#id_label", "Review")
    page.get_by_role("button", name="Create share link").click()
    share_url = page.get_by_test_id("share-url").input_value()
    token = share_url.rstrip("/").rsplit("/", 1)[1]
    s = f"{base}/s/{token}"
    anon_context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        anon = watch.attach(anon_context.new_page())
        twins = {
            "share-project": f"{s}/",
            "share-trials": f"{s}/trials/",
            "share-trial": f"{s}/trials/{trial_ids[0]}/",
            "share-compare": f"{s}/trials/compare/?t={trial_ids[0]}&t={trial_ids[1]}",
            "share-run": f"{s}/finetune/{run.id}/",
            "share-scorecard": f"{s}/scorecard/",
            "share-eval-compare": f"{s}/evaluations/{evaluation.id}/compare/",
            "share-deploy": f"{s}/integrate/deploy/",
            "share-finetune-step": f"{s}/adapt/fine-tune/",
        }
        for name, url in twins.items():
            response = anon.goto(url)
            assert response is not None and response.status == 200, (name, response)
            no_controls(anon, name)
        anon.goto(twins["share-trial"])
        shots(anon, "share-trial")
        anon.goto(twins["share-trials"])
        expect(anon.locator(f"a[href='/s/{token}/trials/{trial_ids[0]}/']")).to_be_visible()
        anon.goto(twins["share-run"])
        anon.wait_for_function("() => window.Chart && Chart.getChart('curves')")
        for width in WIDTHS:
            anon.set_viewport_size({"width": width, "height": 900})
            anon.screenshot(path=str(SHOTS / f"share-run-{width}.png"), full_page=True)
        anon.set_viewport_size({"width": 1400, "height": 900})
        anon.goto(twins["share-deploy"])
        expect(anon.locator("table.tradeoff")).to_be_visible()
        shared = crawl(anon, f"{s}/", within=f"/s/{token}/")
        assert {u: c for u, c in shared.items() if c >= 400} == {}
    finally:
        anon_context.close()

    # --- a viewer: read-only pages, no enabled write controls -----------------------------------
    viewer = cast(User, UserFactory(username="vera"))
    page.goto(f"{p}/members/")
    page.fill("#id_identifier", "vera")
    page.select_option("#id_role", "viewer")
    page.get_by_role("button", name="Invite").click()
    viewer_context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        log_in(viewer_context, base, viewer)
        v = watch.attach(viewer_context.new_page())
        for name, path in {
            "viewer-scope": "/scope/use-case/",
            "viewer-plan": "/select/plan/",
            "viewer-prompt": "/adapt/prompt/",
            "viewer-finetune": "/adapt/fine-tune/",
            "viewer-align": "/adapt/align/",
            "viewer-evaluate": "/adapt/evaluate/",
            "viewer-deploy": "/integrate/deploy/",
            "viewer-trial": f"/trials/{trial_ids[0]}/",
            "viewer-run": f"/finetune/{run.id}/",
            "viewer-datasets": "/datasets/",
            "viewer-dataset": f"/datasets/{dataset.id}/",
            "viewer-round": urlparse(round_url).path.removeprefix(f"/p/{project.slug}"),
        }.items():
            response = v.goto(f"{p}{path}")
            assert response is not None and response.status == 200, (name, response)
            no_write_controls(v, name)
            if name in ("viewer-deploy", "viewer-round", "viewer-trial"):
                shots(v, name)
            if name == "viewer-deploy":
                expect(v.get_by_text("hidden", exact=True)).to_be_visible()  # token prefix
            if name == "viewer-scope":
                check_sidebar(v, name)
        # A page left open while the role changed: the refused htmx request says why.
        v.goto(f"{p}/scope/use-case/")
        v.evaluate(
            "() => htmx.ajax('POST', location.pathname, {target: '#wizard', swap: 'outerHTML'})"
        )
        expect(v.get_by_test_id("refusal")).to_contain_text("You can look at this project")
        # The browser and htmx each log the refused request's 403: expected, nothing else.
        refused = [e for e in watch.errors if "403" in e]
        assert 1 <= len(refused) <= 2, watch.errors
        for error in refused:
            watch.errors.remove(error)
    finally:
        viewer_context.close()

    page.close()
    assert watch.errors == [], watch.errors
    assert Job.objects.filter(project=project).exclude(status=JobStatus.SUCCEEDED).count() == 0
