"""The GPU node on this CPU: start-up from the one Settings object, training on its resident model
through the Trainer a training job sees, the new adapter served, and refusals that say what to set."""

from __future__ import annotations

import socket

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(tmp_path, **overrides):
    from common.settings import Settings

    return Settings(store=str(tmp_path / "store"), gpu_workdir=str(tmp_path / "work"), gpu_host="127.0.0.1",
                    gpu_port=_free_port(), **overrides)


def test_a_node_told_to_use_cuda_without_one_refuses_to_start_and_says_why(tmp_path, monkeypatch):
    import torch

    from gpu.errors import GpuError
    from gpu.worker import GpuNode

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    node = GpuNode(_settings(tmp_path, gpu_device="cuda")).start(background=True)
    with pytest.raises(GpuError, match="sees no CUDA device"):
        node.wait_ready()
    assert node.resident is None and node.serving is None


def test_the_node_settings_are_farm_settings(monkeypatch):
    from common.settings import Settings

    monkeypatch.setenv("FARM_GPU_SERVE", "vllm")
    monkeypatch.setenv("FARM_GPU_WORKDIR", "/srv/gpu-work")
    monkeypatch.setenv("FARM_GPU_VLLM_MAX_LORAS", "6")
    settings = Settings()
    assert (settings.gpu_serve, settings.gpu_workdir, settings.gpu_vllm_max_loras) == ("vllm", "/srv/gpu-work", 6)
    monkeypatch.setenv("FARM_GPU_SERVE", "false")  # the old flag still means "no server here"
    assert Settings().gpu_serve == "off"


@pytest.mark.model
@pytest.mark.slow
def test_the_node_trains_on_its_resident_model_and_serves_the_published_adapter(tmp_path):
    from common.store import Store
    from gpu.adapter_store import publish_adapter
    from gpu.resident_model import UnknownModel
    from gpu.sample_data import tiny_sft_rows
    from gpu.serving import BuiltinServing
    from gpu.worker import GpuNode

    node = GpuNode(_settings(tmp_path)).start(background=False)
    try:
        resident = node.resident
        assert node.device == "cpu" and isinstance(node.serving, BuiltinServing)
        assert resident.prefix_cache is not None and resident.merge_adapters  # the CPU path as before
        base = resident.model
        ask = lambda model: httpx.post(f"{node.serving.url}/v1/chat/completions", timeout=120, json={  # noqa: E731
            "model": model, "messages": [{"role": "user", "content": "user@sandbox:~$ "}], "temperature": 0,
            "max_tokens": 6})
        before = ask("base").json()["choices"][0]["message"]["content"]

        out = node.workdir / "runs" / "node-sft"
        node.train("sft", tiny_sft_rows(3), {"max_steps": 2, "max_length": 192, "tokens_per_batch": 1024,
                                             "num_threads": 2, "lora_r": 8}, out, None)
        assert resident.model is base and not resident.training  # trained on it, given back
        publish_adapter(Store(node.store_url), "node-sft", out)
        node.published("node-sft")  # what a training job calls: the server loads it before any episode
        assert "node-sft" in resident.adapters
        assert ask("node-sft").status_code == 200
        assert ask("base").json()["choices"][0]["message"]["content"] == before
        with pytest.raises(UnknownModel, match="neither served here nor published"):
            node.serving.ensure(["never-trained"])  # what an eval of an unpublished adapter meets
    finally:
        node.stop()


def test_python_m_gpu_worker_runs_one_copy_of_the_node_module(monkeypatch):
    """`python -m gpu.worker` must not leave a second copy (__main__) whose worker_ready handler
    would start a second node beside the one the tasks use: two models loading at once."""
    import runpy

    from celery.signals import worker_ready

    import gpu.worker

    def handlers() -> int:
        return sum(1 for _, ref in worker_ready.receivers
                   if getattr(ref() if callable(ref) else ref, "__name__", "") == "_start_node")

    before = handlers()
    called = []
    monkeypatch.setattr(gpu.worker, "main", lambda: called.append(True) or 0)
    with pytest.raises(SystemExit):
        runpy.run_module("gpu.worker", run_name="__main__")
    assert called == [True]
    assert handlers() == before == 1
