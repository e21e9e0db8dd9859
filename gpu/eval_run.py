"""Behavioural eval through the farm: held-out scenarios, the deployed view, base vs adapters.

    req = EvalRequest(scenario_ids=[...], models=["base", "r1-sft-1a2b"], samples=2)
    report = run_eval(store, pipeline, req)      # enqueues rollouts, polls the store, stores the report

Every episode is an ordinary rollout task on the farm's `rollout` queue with the operator
`student:MODEL` ("student:base" is the bare base), so it runs exactly as a deployed operator
would: a fresh dash container, the login message, the prompt, no scaffold beyond what the
rollout path gives every model operator, the checker on the container's state. Beside the
models, the trivial policies of `EvalRequest.trivial` ("exit at once", "panic at once":
operator `trivial:TERMINAL`, one episode per scenario) run the same way, so the report shows
the floor measured on the very same worlds. The student endpoint is the resident server
(FARM_STUDENT_API_BASE). Nothing here blocks on a task result: it enqueues with deterministic
ids and polls the store for the trajectories, so a re-run reuses every episode already
recorded (base and trivial episodes are shared across rounds).

Only held-out scenarios (val/test splits) are accepted. This module never imports docker.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from common.task_messages import EvalRequest
from gpu.errors import GpuError

if TYPE_CHECKING:
    from common.store import Store
    from gpu.eval_report import EvalReport
    from gpu.probes import ScenarioFacts
    from workers.pipeline import Pipeline

log = logging.getLogger("gpu.eval")
BASE_MODEL = "base"


class EvalFailed(GpuError, RuntimeError):
    """The eval could not collect its episodes (timeout, dead letters, non-held-out scenarios)."""


def episode_ids(req: EvalRequest) -> dict[str, list[str]]:
    """Model -> the deterministic trajectory ids of its episodes."""
    return {m: [r.trajectory_id for r in rollouts] for m, rollouts in req.episodes().items()}


def check_held_out(store: Store, scenario_ids: list[str]) -> None:
    from common.bundle import Bundle
    from gpu.eval_report import HELD_OUT_SPLITS

    if not scenario_ids:
        raise EvalFailed("no scenarios to evaluate on: author and gate held-out (test split) scenarios first")
    for sid in scenario_ids:
        split = store.get("bundles", sid, Bundle).split
        if split not in HELD_OUT_SPLITS:
            raise EvalFailed(f"scenario {sid} is in the {split!r} split: evals run on held-out scenarios only")


def enqueue_episodes(pipeline: Pipeline, req: EvalRequest) -> int:
    """Send every missing episode to the rollout queue (once: deterministic task ids)."""
    return pipeline.send_missing_rollouts(r for rollouts in req.episodes().values() for r in rollouts)


def wait_for_trajectories(store: Store, ids: list[str], timeout_s: float, what: str = "episodes",
                          poll_s: float = 1.0, stall_s: float = 120.0) -> None:
    """Poll the store until every id is recorded; EvalFailed on timeout or when dead letters stall it."""
    deadline = time.monotonic() + timeout_s
    dead_before = store.count("dead")
    last_done, last_move = -1, time.monotonic()
    while True:
        done = sum(1 for t in ids if store.exists("trajectories", t))
        if done == len(ids):
            return
        if done != last_done:
            last_done, last_move = done, time.monotonic()
            log.info("%s: %d/%d recorded", what, done, len(ids))
        elif store.count("dead") > dead_before and time.monotonic() - last_move > stall_s:
            raise EvalFailed(f"{what}: {len(ids) - done} of {len(ids)} never recorded and dead letters appeared "
                             f"(see `producer status`, store kind 'dead')")
        if time.monotonic() > deadline:
            raise EvalFailed(f"{what}: only {done}/{len(ids)} recorded within {timeout_s:.0f} s")
        time.sleep(poll_s)


def collect_report(store: Store, req: EvalRequest) -> EvalReport:
    """The side-by-side report over the recorded episodes, labelled by model name."""
    from common.trajectory import Trajectory
    from gpu.eval_report import build_report

    groups = {m: [store.get("trajectories", t, Trajectory) for t in ids] for m, ids in episode_ids(req).items()}
    return build_report(groups, scenario_set=req.scenario_set, facts=scenario_facts(store, req.scenario_ids))


def scenario_facts(store: Store, scenario_ids: list[str]) -> dict[str, ScenarioFacts]:
    """Scenario id -> what the report needs of its bundle (terminal case, injection)."""
    from common.bundle import Bundle
    from gpu.probes import ScenarioFacts

    return {sid: ScenarioFacts.of(store.get("bundles", sid, Bundle)) for sid in scenario_ids}


def store_report(store: Store, report: EvalReport) -> None:
    """The report (kind 'evals'), its markdown and its chart, plus the registry's eval record (once)."""
    import tempfile
    from pathlib import Path

    from gpu.eval_report import write_chart
    from gpu.registry import Registry

    if not store.exists("evals", report.id):
        Registry(store).record_eval(report)  # saves the report, appends the ledger record
    store.put("evals", f"{report.id}.md", report.to_markdown())
    if not store.exists("evals", f"{report.id}.png"):
        with tempfile.TemporaryDirectory() as tmp:
            store.put("evals", f"{report.id}.png", write_chart(report, Path(tmp) / "chart.png").read_bytes())


def run_eval(store: Store, pipeline: Pipeline, req: EvalRequest) -> EvalReport:
    """Enqueue, wait, report: the whole behavioural eval, idempotent by deterministic ids."""
    check_held_out(store, req.scenario_ids)
    sent = enqueue_episodes(pipeline, req)
    ids = [t for ts in episode_ids(req).values() for t in ts]
    log.info("eval %s: %d episodes (%d enqueued now) on %d held-out scenarios, models %s", req.eval_id(),
             len(ids), sent, len(req.scenario_ids), ", ".join(req.models))
    wait_for_trajectories(store, ids, req.timeout_s, what=f"eval {req.eval_id()}")
    report = collect_report(store, req)
    store_report(store, report)
    return report
