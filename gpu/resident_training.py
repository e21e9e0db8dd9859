"""Training a new adapter on the resident model itself: one copy of the base in memory, serving on.

    with lend_for_training(resident, cfg, parent) as trainable:
        train_sft(rows, cfg, out_dir, parent, trainable=trainable)

The resident base (4-bit on a GPU node, fp32 or bf16 on a CPU) gets a LoRA adapter named
`TRAIN_ADAPTER` beside the adapters it serves; its own weights are frozen and never copied or cast.
Training and serving share the resident's lock: each optimizer step (and the DPO reference and
evaluation passes, checkpoints, the final save) runs inside `trainable.turn()`, which makes the
training adapter active and the model trainable, and a generation between two steps puts the model
in eval mode and selects its own adapter (or disables all of them for the base). So the server
answers during a run, a step at a time later at worst, and the base it serves is the base.

When the run ends, or fails, the training adapter is removed and the model handed back as it was:
gradient checkpointing off, eval mode, and (when it served no adapter before) the bare base.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from gpu.adapters import TRAIN_ADAPTER, remove_adapter
from gpu.errors import GpuError

if TYPE_CHECKING:
    from gpu.resident_model import ResidentModel
    from gpu.train_config import TrainConfig
    from gpu.train_setup import Trainable

log = logging.getLogger("gpu.train")


@contextlib.contextmanager
def lend_for_training(resident: ResidentModel, cfg: TrainConfig, parent: str | Path | None = None
                      ) -> Iterator[Trainable]:
    """The resident model prepared to train one adapter, given back when the block ends."""
    from gpu.train_setup import prepare_trainable, set_checkpointing

    with resident.lock:
        if resident.training:
            raise GpuError("the resident model is already lent to a training run; one run at a time")
        trainable = prepare_trainable(cfg, resident.model, resident.tokenizer, parent)
        resident.model, resident.training = trainable.model, True
    model = trainable.model

    @contextlib.contextmanager
    def turn() -> Iterator[None]:
        with resident.lock:
            model.set_adapter(TRAIN_ADAPTER)  # also makes its weights trainable again after a generation
            model.train()
            yield

    trainable.turn = turn
    try:
        yield trainable
    finally:
        with resident.lock:
            set_checkpointing(model, False)
            resident.model = remove_adapter(model, TRAIN_ADAPTER)
            resident.model.eval()
            resident.training = False
        log.info("the resident model is serving only again (training adapter removed)")
