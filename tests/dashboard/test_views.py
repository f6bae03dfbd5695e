"""Each dashboard view in a real headless Chromium against a real deployment (conftest.py),
its figures compared with what the orchestrator and telemetry APIs say."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

import lockstep
from lockstep.api._records import JournalRecord, agent_digests
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from tests.dashboard.conftest import PAGE_SIZE, Env

pytestmark = pytest.mark.e2e

By: Any = pytest.importorskip("selenium.webdriver.common.by").By
WebDriverWait: Any = pytest.importorskip("selenium.webdriver.support.wait").WebDriverWait


def records(env: Env, run_id: str, *kinds: str) -> list[JournalRecord]:
    return [JournalRecord.from_stored(r) for r in env.dep.telemetry.query(run_id, kinds=kinds)]


def table(browser: Any, table_id: str) -> list[list[str]]:
    rows = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in rows]


def text(browser: Any, element_id: str) -> str:
    return str(browser.find_element(By.ID, element_id).text)


def load(browser: Any, url: str) -> None:
    browser.get(url)
    assert "Internal Server Error" not in browser.page_source


def test_run_list(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, env.url + "/")
    rows = {
        tr.get_attribute("data-run"): [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    }
    summaries = {r.run_id: r for r in env.dep.telemetry.runs()}
    assert set(rows) == set(summaries)  # 3 runs fit one page of 3
    status = env.dep.stub.GetStatus(opb.GetStatusRequest())
    for run in (env.run, env.fork):
        row = rows[run.run_id]
        start = records(env, run.run_id, "run.start")[0].payload
        config = "sha256:" + hashlib.sha256(bytes.fromhex(start["config"])).hexdigest()[:16]
        assert row[2:6] == ["dashboard-test", "5", config, row[5]]
        assert row[7] == "1"  # pools
        assert row[8] == f"{summaries[run.run_id].record_count:,}"
    assert rows[env.run.run_id][1] == "ended"
    assert rows[env.run.run_id][5] == str(summaries[env.run.run_id].max_tick)
    assert rows[env.fork.run_id][1] in ("running", "idle")
    assert rows[env.fork.run_id][5] == str(status.tick)
    assert rows[env.fork.run_id][9] == f"{env.run.run_id} @ 10"  # forked from, at its tick
    assert rows[env.run.run_id][9] == "—"
    screenshot("runs")
    # The filter: by label.
    box = browser.find_element(By.NAME, "q")
    box.send_keys("dashboard")
    box.submit()
    WebDriverWait(browser, 10).until(lambda b: "q=dashboard" in b.current_url)
    shown = {
        tr.get_attribute("data-run")
        for tr in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
    }
    assert shown == {env.run.run_id, env.fork.run_id}


def test_run_page_timeline(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, f"{env.url}/runs/{env.run.run_id}")
    stats = records(env, env.run.run_id, "tick.stats")
    assert text(browser, "summary-tick") == "24"
    assert text(browser, "summary-label") == "dashboard-test"
    assert text(browser, "total-steps") == f"{sum(r.payload['steps'] for r in stats):,}"
    assert text(browser, "total-fuel") == f"{sum(r.payload['fuel'] for r in stats):,}"
    assert text(browser, "total-messages") == f"{sum(r.payload['messages'] for r in stats):,}"
    WebDriverWait(browser, 10).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#timeline .main-svg")
    )
    drawn = browser.execute_script(
        "var d = document.getElementById('timeline').data;"
        "return d.map(function (t) { return [t.x, t.y]; });"
    )
    assert len(drawn) == 5  # wall time, steps, messages, fuel, faults
    assert drawn[1] == [[r.tick for r in stats], [r.payload["steps"] for r in stats]]
    assert drawn[3][1] == [r.payload["fuel"] for r in stats]
    # plotly runs under the page's Content-Security-Policy (no inline script, no eval).
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    screenshot("run")


def test_agent_table(env: Env, browser: Any, screenshot: Any) -> None:
    live = {a.name: a for a in env.dep.stub.ListAgents(opb.ListAgentsRequest()).agents}
    load(browser, f"{env.url}/runs/{env.fork.run_id}/agents")
    rows = table(browser, "agents")
    assert len(rows) == PAGE_SIZE and f"page 1 of 2 ({len(live)} rows)" in browser.page_source
    for row in rows:
        agent = live[row[1]]
        assert row[0] == str(agent.sequence)
        assert row[6] == f"{agent.steps:,}" and row[7] == f"{agent.fuel_used:,}"
        assert row[8] == f"{agent.messages_sent:,}" and row[9] == f"{agent.messages_received:,}"
    browser.find_element(By.ID, "next-page").click()
    assert len(table(browser, "agents")) == len(live) - PAGE_SIZE
    # Sort by fuel, descending (the header link toggles the order).
    load(browser, f"{env.url}/runs/{env.fork.run_id}/agents")
    browser.find_element(By.CSS_SELECTOR, "a.sort[data-col=fuel]").click()
    browser.find_element(By.CSS_SELECTOR, "a.sort[data-col=fuel]").click()
    WebDriverWait(browser, 10).until(lambda b: "order=desc" in b.current_url)
    by_fuel = sorted(live.values(), key=lambda a: -a.fuel_used)
    assert [r[1] for r in table(browser, "agents")] == [a.name for a in by_fuel[:PAGE_SIZE]]
    screenshot("agents")
    box = browser.find_element(By.NAME, "q")
    box.send_keys("p")
    box.submit()
    WebDriverWait(browser, 10).until(lambda b: "q=p" in b.current_url)
    assert sorted(r[1] for r in table(browser, "agents")) == ["ping", "pong"]
    # An ended run's table comes from its journal: spawns and completions.
    load(browser, f"{env.url}/runs/{env.run.run_id}/agents?sort=sequence")
    states = {r[1]: r[2] for r in table(browser, "agents")}
    assert states == {"oracle": "—", "ping": "done", "pong": "done"}  # page 1 of 2


def test_agent_page_escapes_script_logs(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, f"{env.url}/runs/{env.run.run_id}/agents/shouter")
    logs = [r for r in records(env, env.run.run_id, "agent.log") if r.payload["agent"] == "shouter"]
    assert f"page 1 of {-(-len(logs) // PAGE_SIZE)} ({len(logs)} rows)" in browser.page_source
    first = table(browser, "logs")[0]
    assert first == ["1", "info", "<script>document.title='pwned'</script> tick 1"]
    # Shown as text: no script element came from it, it did not run, nothing was injected.
    assert not browser.find_elements(By.CSS_SELECTOR, "#logs script, #agent-args img")
    assert "pwned" not in browser.title and "args" not in browser.title
    assert text(browser, "agent-args") == "<img src=x onerror=\"document.title='args'\">"
    observed = table(browser, "observations")  # the last 20 of the 24
    assert len([r for r in logs if r.payload["level"] == 5]) == 24
    assert observed[0] == ["5", "tick = 5.0"] and observed[-1] == ["24", "tick = 24.0"]
    history = table(browser, "history")
    assert [int(r[0]) for r in history] == list(range(5, 25))  # stepped every tick
    assert "the last 20 of the 24 ticks" in browser.page_source
    digests = {r.tick: r.payload for r in records(env, env.run.run_id, "tick.digest")}
    seq = int(table(browser, "agent-info")[0][0])
    assert history[-1][1] == agent_digests(digests[24])[seq]
    screenshot("agent")


def test_message_flow(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, f"{env.url}/runs/{env.run.run_id}/flow?from_tick=1&to_tick=24")
    stats = records(env, env.run.run_id, "tick.stats")
    assert text(browser, "flow-sent") == str(sum(r.payload["sent"] for r in stats))
    assert text(browser, "flow-messages") == str(sum(r.payload["messages"] for r in stats))
    edges = {(r[0], r[1], r[2]): r[3] for r in table(browser, "edges")}
    results = records(env, env.run.run_id, "infer.result")
    assert edges == {
        ("(outside the run)", "oracle", "external message"): "1",
        ("oracle", "model charlm", "inference request"): str(len(results)),
        ("model charlm", "oracle", "inference result"): str(len(results)),
    }
    WebDriverWait(browser, 10).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#flow-chart .main-svg")
    )
    screenshot("flow")


def test_digest_chain(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, f"{env.url}/runs/{env.fork.run_id}/digests")
    assert text(browser, "chain-status").startswith("hash chain verified by telemetry")
    resp = env.dep.stub.GetDigests(opb.GetDigestsRequest(from_tick=0, to_tick=0))
    orch = {d.tick: d.digest.hex() for d in resp.digests}
    rows = table(browser, "digests")
    assert len(rows) == PAGE_SIZE
    for row in rows:
        assert row[1] == orch[int(row[0])] and row[3] == "matches"
    screenshot("digests")


def test_journal_browser(env: Env, browser: Any, screenshot: Any) -> None:
    base = f"{env.url}/runs/{env.run.run_id}/journal?kind=agent.log&agent=shouter"
    load(browser, base)
    wanted = [
        r for r in records(env, env.run.run_id, "agent.log") if r.payload["agent"] == "shouter"
    ]
    rows = table(browser, "journal")
    assert [int(r[0]) for r in rows] == [r.sequence for r in wanted[:PAGE_SIZE]]
    assert rows[0][3] == (
        '{"agent":"shouter","level":2,"text":"<script>document.title=\'pwned\'</script> tick 1"}'
    )
    assert rows[0][4] == wanted[0].hash[:16]
    screenshot("journal")
    assert text(browser, "chain-status").startswith(
        f"hash chain verified over records {wanted[0].sequence}.."
    )
    browser.find_element(By.ID, "next-page").click()
    assert [int(r[0]) for r in table(browser, "journal")] == [
        r.sequence for r in wanted[PAGE_SIZE : 2 * PAGE_SIZE]
    ]
    load(browser, f"{env.url}/runs/{env.run.run_id}/journal?from_tick=3&to_tick=4")
    assert {r[1] for r in table(browser, "journal")} <= {"3", "4"}


def test_inference_log(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, f"{env.url}/runs/{env.run.run_id}/inference")
    results = records(env, env.run.run_id, "infer.result")
    rows = table(browser, "inference")
    assert len(rows) == len(results) == 2
    for row, rec in zip(rows, results, strict=True):
        p = rec.payload
        assert row[0] == str(rec.tick) and row[1] == str(rec.tick - 2)
        assert row[2] == "oracle" and row[3] == str(p["request_id"]) and row[4] == "charlm"
        assert row[6] == p["provider"] and row[7] == "5" and row[8] == p["key"]
        assert row[9] == "2 ticks"
        assert row[11] == bytes.fromhex(p["output"]).decode()
    screenshot("inference")


def test_checkpoints(env: Env, browser: Any, screenshot: Any) -> None:
    load(browser, f"{env.url}/runs/{env.run.run_id}/checkpoints")
    rows = table(browser, "checkpoints")
    assert len(rows) == 1
    assert rows[0][:4] == ["10", env.checkpoint.id, "mid", "4"]
    assert env.fork.run_id in rows[0][4]
    screenshot("checkpoints")
    load(browser, f"{env.url}/runs/{env.fork.run_id}/checkpoints")
    assert env.checkpoint.id in text(browser, "restored-from")


def test_compare(env: Env, browser: Any, screenshot: Any) -> None:
    expected = lockstep.diff(env.run, env.fork)
    load(browser, f"{env.url}/compare?a={env.run.run_id}&b={env.fork.run_id}")
    assert text(browser, "first-tick") == str(expected.first_tick)
    assert text(browser, "first-agent") == expected.first_agent == "shouter"
    rows = table(browser, "compare-digests")
    marked = [r for r in rows if "first divergence" in r[0]]
    assert len(marked) == 1 and marked[0][1] != marked[0][2]
    before = [r for r in rows if int(r[0].split()[0]) < (expected.first_tick or 0)]
    assert before and all(r[1] == r[2] for r in before)
    screenshot("compare")


def test_live_run_updates(env: Env, browser: Any) -> None:
    """The current run's page redraws by itself (polling, every render interval)."""
    load(browser, f"{env.url}/runs/{env.fork.run_id}")
    WebDriverWait(browser, 10).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#timeline .main-svg")
    )
    before = int(text(browser, "summary-tick"))
    env.fork.step(2)
    status = env.dep.stub.GetStatus(opb.GetStatusRequest())
    after = int(status.tick)
    assert after == before + 2
    WebDriverWait(browser, 15).until(
        lambda b: b.find_element(By.ID, "summary-tick").text == str(after)
    )
    assert text(browser, "summary-digest") == status.digest.hex()
    last_x = browser.execute_script(
        "var x = document.getElementById('timeline').data[1].x; return x[x.length - 1];"
    )
    assert last_x == after
