"""The HTTP admin API: Vendure's job operations as JSON, errors naming the field, the login,
CSRF and read-only checks, redaction, and the action table's feature detection."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from starlette.testclient import TestClient

from adapter import CeleryJobQueueStrategy, ScheduledTask
from adapter.errors import ConfigurationError
from adapter.job import Job, JobState
from adapter.store.memory import MemoryJobStore
from adapter.web import Auth, check_bind, create_app
from adapter.web.actions import ACTIONS, available

#: Where the test clients reach the app: a loopback address, as ``jobqueue dashboard`` binds.
LOCAL = "http://127.0.0.1:8025"


class NoWorkers:
    """A worker source with no worker."""

    def workers(self) -> list[Any]:
        """Return no worker."""
        return []


@pytest.fixture
def strategy() -> Iterator[CeleryJobQueueStrategy]:
    app = Celery("web-api")
    app.conf.update(broker_url="memory://", worker_hijack_root_logger=False)
    made = CeleryJobQueueStrategy(app, store=MemoryJobStore(), embedded_worker=False)
    yield made
    made.destroy()


def make_client(strategy: CeleryJobQueueStrategy, **options: Any) -> TestClient:
    options.setdefault("workers", NoWorkers())
    return TestClient(create_app(strategy, **options), base_url=LOCAL)


def csrf(client: TestClient) -> dict[str, str]:
    token = client.get("/api/meta").json()["csrfToken"]
    return {"X-CSRF-Token": token}


def stored(strategy: CeleryJobQueueStrategy, **fields: Any) -> Job:
    job = Job(id=fields.pop("id", None) or None, **{"queue_name": "mail", **fields})
    strategy.store.insert(job)
    return job


def test_jobs_are_listed_in_vendures_camel_case_with_filters(
    strategy: CeleryJobQueueStrategy,
) -> None:
    stored(strategy, id="a", data={"to": "x"})
    stored(strategy, id="b", queue_name="pdf", state=JobState.FAILED)
    client = make_client(strategy)
    page = client.get("/api/jobs", params={"queue": "mail"}).json()
    assert page["totalItems"] == 1
    assert page["items"][0]["id"] == "a" and page["items"][0]["queueName"] == "mail"
    searched = client.post(
        "/api/jobs/search", json={"filter": {"state": {"eq": "FAILED"}}}, headers=csrf(client)
    ).json()
    assert [job["id"] for job in searched["items"]] == ["b"]
    assert [j["id"] for j in client.get("/api/jobs-by-id", params={"id": ["b", "zz"]}).json()] == [
        "b"
    ]
    assert client.get("/api/jobs/a").json()["data"] == {"to": "x"}


def test_text_search_looks_in_data_and_error(strategy: CeleryJobQueueStrategy) -> None:
    stored(strategy, id="a", data={"email": "Ann@example.com"})
    stored(strategy, id="b", error="SMTP refused")
    stored(strategy, id="c", data={"email": "bob@example.com"})
    client = make_client(strategy)
    assert [j["id"] for j in client.get("/api/jobs?text=ann@").json()["items"]] == ["a"]
    assert [j["id"] for j in client.get("/api/jobs?text=smtp").json()["items"]] == ["b"]


def test_bad_list_options_are_a_400_naming_the_field(strategy: CeleryJobQueueStrategy) -> None:
    client = make_client(strategy)
    reply = client.post("/api/jobs/search", json={"filter": {"nope": {}}}, headers=csrf(client))
    assert reply.status_code == 400
    assert reply.json()["field"] == "filter.nope"
    reply = client.get("/api/jobs?take=-3")
    assert (reply.status_code, reply.json()["field"]) == (400, "take")
    reply = client.get("/api/jobs?state=SLEEPING")
    assert (reply.status_code, reply.json()["field"]) == (400, "state")
    reply = client.get("/api/jobs/missing")
    assert (reply.status_code, reply.json()["field"]) == (404, "jobId")


def test_data_keys_configured_as_secret_are_never_shown(strategy: CeleryJobQueueStrategy) -> None:
    stored(strategy, id="a", data={"user": {"Password": "hunter2", "name": "ann"}})
    client = make_client(strategy, redact_keys=["password"])
    shown = client.get("/api/jobs/a").text + client.get("/api/jobs").text
    assert "hunter2" not in shown
    assert client.get("/api/jobs/a").json()["data"] == {"user": {"Password": "***", "name": "ann"}}


def test_a_shown_url_has_its_password_masked(strategy: CeleryJobQueueStrategy) -> None:
    client = make_client(strategy, shown_urls={"store": "redis://u:s3cret@host:6379/1"})
    assert "s3cret" not in client.get("/api/meta").text


def test_cancel_one_job_and_every_job_matching(
    strategy: CeleryJobQueueStrategy, caplog: pytest.LogCaptureFixture
) -> None:
    for job_id in ("a", "b", "c"):
        stored(strategy, id=job_id)
    stored(strategy, id="d", queue_name="pdf")
    client = make_client(strategy)
    with caplog.at_level(logging.INFO, logger="adapter.web"):
        one = client.post("/api/jobs/a/cancel", headers=csrf(client)).json()
    assert one["changed"] and one["job"]["state"] == "CANCELLED"
    assert "dashboard action cancel on job a by testclient" in caplog.text
    many = client.post(
        "/api/jobs/cancel",
        json={"options": {"filter": {"queueName": {"eq": "mail"}}}},
        headers=csrf(client),
    ).json()
    assert many == {"changed": 2, "matched": 3}
    assert strategy.find_one("d").state == JobState.PENDING  # type: ignore[union-attr]


def test_remove_deletes_only_settled_jobs(strategy: CeleryJobQueueStrategy) -> None:
    stored(strategy, id="a")
    client = make_client(strategy)
    headers = csrf(client)
    assert client.post("/api/jobs/remove", json={"ids": ["a"]}, headers=headers).json() == {
        "changed": 0,
        "matched": 1,
    }
    client.post("/api/jobs/a/cancel", headers=headers)
    assert client.post("/api/jobs/a/remove", headers=headers).json()["changed"] is True
    assert strategy.find_one("a") is None


def test_a_post_without_the_csrf_token_is_refused(strategy: CeleryJobQueueStrategy) -> None:
    stored(strategy, id="a")
    client = make_client(strategy)
    reply = client.post("/api/jobs/a/cancel")
    assert reply.status_code == 403 and "csrf" in reply.json()["error"].lower()
    wrong = client.post("/api/jobs/a/cancel", headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    other_site = client.post(
        "/api/jobs/a/cancel", headers={**csrf(client), "Origin": "http://evil.example"}
    )
    assert other_site.status_code == 403
    assert strategy.find_one("a").state == JobState.PENDING  # type: ignore[union-attr]


def test_read_only_mode_offers_and_accepts_no_action(strategy: CeleryJobQueueStrategy) -> None:
    stored(strategy, id="a")
    client = make_client(strategy, read_only=True)
    assert client.get("/api/meta").json()["actions"] == []
    reply = client.post("/api/jobs/a/cancel", headers=csrf(client))
    assert reply.status_code == 403 and "read-only" in reply.json()["error"]
    assert strategy.find_one("a").state == JobState.PENDING  # type: ignore[union-attr]
    assert client.post("/api/jobs/search", json={}, headers=csrf(client)).status_code == 200


def test_with_a_token_every_route_needs_it(strategy: CeleryJobQueueStrategy) -> None:
    client = make_client(strategy, auth=Auth(token="t0k"))
    assert client.get("/api/jobs").status_code == 401
    assert client.get("/").status_code == 401
    bearer = {"Authorization": "Bearer t0k"}
    assert client.get("/api/jobs", headers=bearer).status_code == 200
    opened = client.get("/?token=t0k", follow_redirects=False)
    assert opened.status_code == 303 and "jobqueue_token=t0k" in opened.headers["set-cookie"]


def test_basic_auth_names_the_user_in_the_log(
    strategy: CeleryJobQueueStrategy, caplog: pytest.LogCaptureFixture
) -> None:
    stored(strategy, id="a")
    client = make_client(strategy, auth=Auth(user="ops", password="pw"))
    assert client.get("/api/meta", auth=("ops", "bad")).status_code == 401
    client.auth = ("ops", "pw")
    with caplog.at_level(logging.INFO, logger="adapter.web"):
        client.post("/api/jobs/a/cancel", headers=csrf(client))
    assert "by ops@testclient" in caplog.text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "::", "example.com"])
def test_a_non_loopback_bind_without_auth_is_refused(host: str) -> None:
    with pytest.raises(ConfigurationError, match="without a login"):
        check_bind(host, None)
    check_bind(host, Auth(token="t"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_a_loopback_bind_needs_no_auth(host: str) -> None:
    check_bind(host, None)


def test_actions_whose_strategy_method_is_missing_are_not_offered() -> None:
    class Bare:
        def cancel_job(self, job_id: str) -> None:
            """Cancel."""

    offered = [action.name for action in available(Bare(), read_only=False)]
    assert offered == ["cancel"]

    class Full(Bare):
        def retry_job(self, job_id: str) -> None:
            """Retry."""

        def pause_queue(self, name: str) -> None:
            """Pause."""

    assert {"retry", "pause"} <= {action.name for action in available(Full(), read_only=False)}
    assert len(ACTIONS) == len({(action.name, action.target) for action in ACTIONS})


def test_the_page_carries_the_csrf_token_and_its_assets_are_served(
    strategy: CeleryJobQueueStrategy,
) -> None:
    client = make_client(strategy)
    page = client.get("/").text
    assert client.get("/api/meta").json()["csrfToken"] in page
    assert client.get("/static/app.js").status_code == 200


def test_an_unknown_route_is_a_json_404(strategy: CeleryJobQueueStrategy) -> None:
    reply = make_client(strategy).get("/api/nothing")
    assert reply.status_code == 404 and "error" in reply.json()


def test_it_works_mounted_under_a_prefix(strategy: CeleryJobQueueStrategy) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    stored(strategy, id="a")
    host = Starlette(routes=[Mount("/jobs", create_app(strategy, workers=NoWorkers()))])
    client = TestClient(host, base_url="http://127.0.0.1:8000")
    assert client.get("/jobs/api/jobs/a").json()["id"] == "a"
    page = client.get("/jobs")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert str(page.url) == "http://127.0.0.1:8000/jobs/"  # relative links resolve below it
    assert client.get("/jobs/static/style.css").status_code == 200


def test_replies_forbid_framing_and_foreign_scripts(strategy: CeleryJobQueueStrategy) -> None:
    client = make_client(strategy, auth=Auth(token="t"))
    for reply in (client.get("/"), client.get("/api/meta", headers={"Authorization": "Bearer t"})):
        assert reply.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
        assert reply.headers["referrer-policy"] == "no-referrer"


def test_retry_one_job_a_selection_and_every_job_matching(
    strategy: CeleryJobQueueStrategy,
) -> None:
    stored(strategy, id="f1", state=JobState.FAILED)
    stored(strategy, id="f2", state=JobState.FAILED)
    stored(strategy, id="p", state=JobState.PENDING)
    client = make_client(strategy)
    headers = csrf(client)
    one = client.post("/api/jobs/f1/retry", headers=headers).json()
    assert one["changed"] and one["job"]["retriedFrom"] == "f1"
    assert client.get("/api/jobs/f1").json()["retriesOf"] == [one["job"]["id"]]
    refused = client.post("/api/jobs/p/retry", headers=headers)
    assert refused.status_code == 409 and "error" in refused.json()
    selection = client.post("/api/jobs/retry", json={"ids": ["f2", "p"]}, headers=headers)
    assert selection.json() == {"changed": 1, "matched": 2}
    matching = client.post(
        "/api/jobs/retry",
        json={"options": {"filter": {"state": {"eq": "FAILED"}}}},
        headers=headers,
    )
    assert matching.json()["changed"] == 0  # both already re-run


class WithoutControls:
    """The wrapped strategy without pausing and scheduling (a strategy of another kind)."""

    HIDDEN = frozenset({"pause_queue", "resume_queue", "queue_controls", "scheduler"})

    def __init__(self, inner: CeleryJobQueueStrategy) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in self.HIDDEN:
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_a_queue_is_paused_and_resumed_and_the_overview_says_so(
    strategy: CeleryJobQueueStrategy,
) -> None:
    stored(strategy, id="a")
    client = make_client(strategy)
    offered = {a["name"] for a in client.get("/api/meta").json()["actions"]}
    assert {"cancel", "retry", "remove", "pause", "resume"} <= offered
    client.post("/api/queues/mail/pause", headers=csrf(client))
    assert client.get("/api/queues").json()[0]["paused"] is True
    client.post("/api/queues/mail/resume", headers=csrf(client))
    assert client.get("/api/queues").json()[0]["paused"] is False


def test_scheduled_tasks_are_listed_run_now_disabled_and_enabled(
    strategy: CeleryJobQueueStrategy,
) -> None:
    strategy.scheduler.add(ScheduledTask(id="nightly", schedule="0 3 * * *", execute=print))
    client = make_client(strategy)
    assert "run-now" in {a["name"] for a in client.get("/api/meta").json()["actions"]}
    [task] = client.get("/api/schedules").json()
    assert (task["id"], task["enabled"]) == ("nightly", True)
    assert client.post("/api/schedules/nightly/run-now", headers=csrf(client)).json()["done"]
    unknown = client.post("/api/schedules/weekly/run-now", headers=csrf(client))
    assert unknown.status_code == 400 and "no scheduled task 'weekly'" in unknown.json()["error"]
    client.post("/api/schedules/nightly/disable", headers=csrf(client))
    assert client.get("/api/schedules").json()[0]["enabled"] is False
    client.post("/api/schedules/nightly/enable", headers=csrf(client))
    assert client.get("/api/schedules").json()[0]["enabled"] is True


def test_without_those_methods_there_is_no_paused_flag_and_no_schedule(
    strategy: CeleryJobQueueStrategy,
) -> None:
    stored(strategy, id="a")
    client = TestClient(create_app(WithoutControls(strategy), workers=NoWorkers()), base_url=LOCAL)
    assert "paused" not in client.get("/api/queues").json()[0]
    assert client.get("/api/schedules").json() == []
    reply = client.post("/api/queues/mail/pause", headers=csrf(client))
    assert reply.status_code == 404 and reply.json()["field"] == "action"


def test_metrics_are_served_behind_the_login(strategy: CeleryJobQueueStrategy) -> None:
    stored(strategy, id="a")
    client = make_client(strategy, auth=Auth(token="t"))
    assert client.get("/metrics").status_code == 401
    reply = client.get("/metrics", headers={"Authorization": "Bearer t"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert 'adapter_jobs{queue="mail",state="PENDING"} 1.0' in reply.text


def test_workers_show_their_heartbeat_age_and_silent_ones_are_listed() -> None:
    from adapter.celery.workers import WorkerInfo
    from adapter.web.overview import workers_with_heartbeats

    answering = [WorkerInfo("w1@host", ["mail"], ["a"])]
    shown = workers_with_heartbeats(answering, {"w1@host": 95.0, "w2@host": 40.0}, now=100.0)
    assert shown == [
        {"hostname": "w1@host", "queues": ["mail"], "runningJobs": ["a"],
         "heartbeatAgeS": 5.0, "answering": True},
        {"hostname": "w2@host", "queues": [], "runningJobs": [],
         "heartbeatAgeS": 60.0, "answering": False},
    ]  # fmt: skip


def test_without_a_login_only_loopback_host_names_are_served(
    strategy: CeleryJobQueueStrategy,
) -> None:
    app = create_app(strategy, workers=NoWorkers())
    rebound = TestClient(app, base_url="http://attacker.example:8025")  # DNS rebinding
    assert rebound.get("/api/meta").status_code == 403
    for base in ("http://localhost:8025", "http://[::1]:8025", "http://127.0.0.1:8025"):
        assert TestClient(app, base_url=base).get("/api/meta").status_code == 200
    behind_a_proxy = create_app(strategy, workers=NoWorkers(), allowed_hosts=["jobs.example"])
    assert TestClient(behind_a_proxy, base_url="http://jobs.example").get("/").status_code == 200
