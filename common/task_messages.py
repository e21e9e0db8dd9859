"""The farm's messages: for each Celery task, its name, its queue, its arguments and its id.

    msg = RolloutRequest(bundle_id=b, operator="oracle", sample=0, samples=4)
    pipeline.send(msg)        # task msg.NAME, id msg.task_id(), keyword arguments msg.kwargs()

One typed message per task. Every sender builds one (workers.pipeline, producer, the GPU
node's eval) and every task takes its fields as JSON keyword arguments, so a task's name,
id scheme and arguments are written here and nowhere else. Ids are deterministic: the same
work has the same id, so a message sent twice is recognised (`Pipeline.send`) and a
redelivered task finds what it already wrote. Light on purpose (pydantic and common.ids):
the producer, the CPU workers and the GPU node all import it, and none of them pulls in
another role's dependencies with it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common import ids


class TaskMessage(BaseModel):
    """A task's arguments; the class says which task (NAME) on which queue (QUEUE)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    NAME: ClassVar[str]
    QUEUE: ClassVar[str]

    def task_id(self) -> str:
        """The task's id: the same work, the same id."""
        raise NotImplementedError

    def kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments, as JSON."""
        return self.model_dump(mode="json")


class AuthorRequest(TaskMessage):
    """Author combos [start, start+count) of the `total` balanced combos drawn from `seed`."""

    NAME: ClassVar[str] = "farm.author"
    QUEUE: ClassVar[str] = "author"
    seed: int
    total: int = Field(ge=1, description="Scenarios the whole enqueue draws; this chunk is a slice of them.")
    start: int = Field(ge=0)
    count: int = Field(ge=1)
    author: str = Field("procedural", description="'procedural' or 'litellm:MODEL'.")
    samples: int = Field(8, ge=0, description="Rollouts per admitted bundle.")
    operator: str = Field("oracle", description="Who acts in those rollouts (an operator spec).")
    split: Literal["train", "val", "test"] | None = Field(None, description="Only this split's archetypes.")

    def task_id(self) -> str:
        # Same producer arguments, same ids: a re-run of `producer enqueue` sends nothing twice.
        return "author:" + ids.derived_id(self.seed, self.total, self.start, self.count, self.author, self.samples,
                                          self.operator, self.split)


class GateRequest(TaskMessage):
    """Gate one stored bundle; if admitted, roll `operator` out `samples` times on it."""

    NAME: ClassVar[str] = "farm.gate"
    QUEUE: ClassVar[str] = "gate"
    bundle_id: str
    samples: int = Field(ge=0)
    operator: str

    def task_id(self) -> str:
        return f"gate:{self.bundle_id}"


class RolloutRequest(TaskMessage):
    """One episode: `operator` on a bundle, sample `sample` of a batch of `samples`."""

    NAME: ClassVar[str] = "farm.rollout"
    QUEUE: ClassVar[str] = "rollout"
    bundle_id: str
    operator: str
    sample: int = Field(ge=0)
    samples: int = Field(ge=1, description="The batch size: its last recorded episode sends the pairs task.")

    @property
    def trajectory_id(self) -> str:
        return ids.trajectory_id(self.bundle_id, self.operator, self.sample)

    def task_id(self) -> str:
        return f"rollout:{self.trajectory_id}"

    @classmethod
    def batch(cls, bundle_id: str, operator: str, samples: int) -> list[RolloutRequest]:
        """The `samples` episodes of `operator` on one bundle."""
        return [cls(bundle_id=bundle_id, operator=operator, sample=k, samples=samples) for k in range(samples)]


class PairsRequest(TaskMessage):
    """Build the DPO pairs of one scenario from its recorded trajectories."""

    NAME: ClassVar[str] = "farm.pairs"
    QUEUE: ClassVar[str] = "pairs"
    scenario_id: str
    trajectory_ids: list[str]

    @field_validator("trajectory_ids")
    @classmethod
    def _sorted(cls, v: list[str]) -> list[str]:
        return sorted(v)  # the same trajectories in any order are the same work

    def task_id(self) -> str:
        return f"pairs:{self.scenario_id}:{ids.derived_id(*self.trajectory_ids)}"


def default_adapter_name(method: str, data_ids: list[str], parent: str | None, config: dict) -> str:
    """Named by the dataset fingerprint (and parent and config): same data, same name, trained once."""
    return f"{method}-{ids.derived_id(*sorted(data_ids), parent or '', json.dumps(config, sort_keys=True), length=12)}"


class TrainRequest(TaskMessage):
    """Train one adapter on the GPU node: SFT on keepers, or DPO on pairs."""

    NAME: ClassVar[str] = "farm.train"
    QUEUE: ClassVar[str] = "train"
    method: Literal["sft", "dpo"] = "sft"
    trajectory_ids: list[str] = Field(default_factory=list, description="SFT: the keepers to train on.")
    pair_ids: list[str] = Field(default_factory=list, description="DPO: the pairs to train on.")
    parent: str | None = Field(None, description="Published adapter to continue from (DPO: the SFT adapter).")
    name: str | None = Field(None, description="Adapter name; default: method + dataset fingerprint.")
    config: dict[str, Any] = Field(default_factory=dict, description="SFTConfig / DPOConfig overrides.")
    reason: str = ""

    def data_ids(self) -> list[str]:
        return sorted(set(self.trajectory_ids if self.method == "sft" else self.pair_ids))

    def adapter_name(self) -> str:
        return self.name or default_adapter_name(self.method, self.data_ids(), self.parent, self.config)

    def task_id(self) -> str:
        return f"train:{self.adapter_name()}"  # an adapter is trained once


class EvalRequest(TaskMessage):
    """Held-out behavioural eval of `models`, each episode an ordinary rollout of `student:MODEL`."""

    NAME: ClassVar[str] = "farm.eval"
    QUEUE: ClassVar[str] = "eval"
    scenario_ids: list[str] = Field(description="Admitted held-out bundles to evaluate on.")
    models: list[str] = Field(description="'base' and/or published adapter names; the first is the baseline.")
    samples: int = Field(1, ge=1, description="Episodes per scenario and model.")
    timeout_s: float = Field(3600.0, description="Give up waiting for the episodes after this long.")
    scenario_set: str | None = Field(None, description="The named set the scenarios are (`producer import`); "
                                     "the report names it. None: a procedural held-out draw.")
    trivial: list[Literal["exit", "panic"]] = Field(
        default_factory=lambda: ["exit", "panic"], description="Trivial policies shown beside the models, each "
        "as operator `trivial:TERMINAL` (say the terminal at once): the floor a model must clear. One episode "
        "per scenario: they are deterministic.")

    def eval_id(self) -> str:
        named = [f"set:{self.scenario_set}"] if self.scenario_set else []
        return ids.derived_id(*sorted(self.scenario_ids), *self.models, self.samples, *named,
                              *(f"trivial:{t}" for t in self.trivial), prefix="evalrun-")

    def task_id(self) -> str:
        return f"eval:{self.eval_id()}"

    def episodes(self) -> dict[str, list[RolloutRequest]]:
        """Label -> its episodes: each model, then each trivial policy (labelled by `trivial_label`).
        Base and trivial episodes are shared by every eval that names the same scenarios."""
        out = {m: [r for s in sorted(self.scenario_ids) for r in RolloutRequest.batch(s, f"student:{m}", self.samples)]
               for m in self.models}
        for t in self.trivial:
            out[trivial_label(t)] = [RolloutRequest(bundle_id=s, operator=f"trivial:{t}", sample=0, samples=1)
                                     for s in sorted(self.scenario_ids)]
        return out


def trivial_label(terminal: str) -> str:
    """The eval report's label of the trivial policy that says `terminal` at once."""
    return f"{terminal} at once"


class NoopRequest(TaskMessage):
    """A probe: measures the broker round trip and checks that a worker answers."""

    NAME: ClassVar[str] = "farm.noop"
    QUEUE: ClassVar[str] = "gate"
    value: int = 0

    def task_id(self) -> str:
        return f"noop:{uuid.uuid4().hex}"  # every probe is new


MESSAGES: tuple[type[TaskMessage], ...] = (AuthorRequest, GateRequest, PairsRequest, RolloutRequest, TrainRequest,
                                           EvalRequest, NoopRequest)
