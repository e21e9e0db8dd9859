"""The vLLM mode up to the process boundary: the adapter-loading protocol driven against the built-in
server (which implements vLLM's endpoints), the `vllm serve` command line, and a stand-in `vllm`
executable started, waited for and stopped as the node does it."""

from __future__ import annotations

import copy
import json
import os
import socket
import stat
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

PROMPT = [{"role": "user", "content": "What is 2+2? Answer briefly."}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(tmp_path: Path, **overrides):
    from common.settings import Settings

    return Settings(store=str(tmp_path / "store"), gpu_workdir=str(tmp_path / "work"), gpu_serve="vllm",
                    gpu_host="127.0.0.1", gpu_port=_free_port(), **overrides)


# ---------------------------------------------------------------- the command line (no process)


def test_the_vllm_command_serves_base_with_runtime_lora_and_no_model_sampling_defaults(tmp_path):
    from gpu.vllm_server import vllm_command, vllm_env

    settings = _settings(tmp_path, gpu_vllm_args="--max-model-len 16384 --quantization bitsandbytes")
    cmd = vllm_command(settings, "Qwen/Qwen2.5-7B-Instruct")
    assert cmd[:3] == ["vllm", "serve", "Qwen/Qwen2.5-7B-Instruct"]
    assert "--enable-lora" in cmd
    flags = {k: v for k, v in zip(cmd, cmd[1:]) if k.startswith("--")}
    assert flags["--served-model-name"] == "base"  # evals ask for "base"
    assert flags["--max-loras"] == "4" and flags["--max-cpu-loras"] == "8" and flags["--max-lora-rank"] == "64"
    assert flags["--generation-config"] == "vllm"  # not the model's generation_config.json defaults
    assert flags["--gpu-memory-utilization"] == "0.45" and flags["--port"] == str(settings.gpu_port)
    assert cmd[-4:] == ["--max-model-len", "16384", "--quantization", "bitsandbytes"]
    assert vllm_env({"HF_TOKEN": "t"}) == {"HF_TOKEN": "t", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def test_what_vllm_cannot_serve_is_refused_with_the_fix(tmp_path, monkeypatch):
    from gpu.vllm_server import VllmServer, VllmUnavailable, vllm_command

    with pytest.raises(VllmUnavailable, match="FARM_GPU_SERVE=builtin"):
        vllm_command(_settings(tmp_path), "smollm2")  # a GGUF: the built-in server's
    with pytest.raises(VllmUnavailable, match="8, 16, 32"):
        vllm_command(_settings(tmp_path, gpu_max_lora_rank=48), "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm here
    with pytest.raises(VllmUnavailable, match="pip install vllm"):
        VllmServer(_settings(tmp_path), "Qwen/Qwen2.5-7B-Instruct", tmp_path / "vllm.log").start(5)


# ---------------------------------------------------------------- the loading protocol against the built-in server


@pytest.fixture(scope="module")
def builtin(smollm2_model, smollm2_tokenizer):
    """The built-in server with no store behind it: only explicit loading makes an adapter servable."""
    from gpu.resident_model import ResidentModel
    from gpu.serving import BuiltinServing

    engine = BuiltinServing(ResidentModel(copy.deepcopy(smollm2_model), smollm2_tokenizer, "smollm2"),
                            "127.0.0.1", _free_port())
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def store_with_adapters(smollm2_model, tmp_path_factory):
    """A store with two published random LoRAs (B not zero, so they change the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from common.store import Store
    from gpu.adapter_store import publish_adapter
    from gpu.adapters import fingerprint, save_adapter

    root = tmp_path_factory.mktemp("published")
    store = Store(str(root / "store"))
    models = {}
    for seed, name in enumerate(("pub-a", "pub-b")):
        torch.manual_seed(seed)
        model = get_peft_model(copy.deepcopy(smollm2_model),
                               LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        save_adapter(model, root / name, method="sft", base_model="smollm2", training_config={},
                     dataset=fingerprint([name]))
        publish_adapter(store, name, root / name)
        models[name] = model.eval()
    return store, models


def _ask(url: str, model: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=120,
                      json={"model": model, "messages": PROMPT, "temperature": 0, "max_tokens": 8})


@pytest.mark.model
@pytest.mark.slow
def test_published_adapters_are_loaded_before_use_and_the_least_recent_unloaded(builtin, store_with_adapters,
                                                                                 smollm2_model, smollm2_tokenizer,
                                                                                 tmp_path):
    from gpu.adapter_loading import AdapterLoader
    from gpu.adapter_store import fetch_adapter
    from tests.gpu.test_server import Served

    store, models = store_with_adapters
    url, resident = builtin.url, builtin.resident
    fetched = []

    def fetch(name):
        fetched.append(name)
        return fetch_adapter(store, name, tmp_path / "cache")

    loader = AdapterLoader(url, fetch, max_adapters=1)
    assert _ask(url, "pub-a").status_code == 404  # not loaded: the server alone does not know it
    loader.ensure(["base", "pub-a"])  # what the eval task does before its first episode
    answer = _ask(url, "pub-a")
    assert answer.status_code == 200
    served = Served(url, resident, smollm2_model, smollm2_tokenizer)
    assert served.is_greedy(PROMPT, answer.json()["choices"][0]["message"]["content"], model=models["pub-a"])
    loader.ensure(["pub-a"])  # already loaded: no fetch, no call
    assert fetched == ["pub-a"] and list(resident.adapters) == ["pub-a"]

    loader.ensure(["pub-b"])  # one adapter at most: the least recently used goes
    assert list(resident.adapters) == ["pub-b"] and list(loader.loaded) == ["pub-b"]
    assert _ask(url, "pub-a").status_code == 404 and _ask(url, "pub-b").status_code == 200

    # a node restarted beside a running server adopts what it holds instead of failing on "already loaded"
    again = AdapterLoader(url, fetch, max_adapters=1)
    assert again.sync() == ["pub-b"]
    again.ensure(["pub-b"])
    assert fetched == ["pub-a", "pub-b"]
    loader.close()
    again.close()


@pytest.mark.model
@pytest.mark.slow
def test_the_servers_refusals_and_silence_are_errors_that_say_why(builtin, tmp_path):
    from gpu.adapter_loading import AdapterLoader, AdapterLoadFailed
    from gpu.adapter_store import AdapterNotInStore

    (tmp_path / "not-an-adapter").mkdir()
    loader = AdapterLoader(builtin.url, lambda name: tmp_path / "not-an-adapter")
    with pytest.raises(AdapterLoadFailed, match="refused adapter 'broken'.*adapter_config.json"):
        loader.ensure(["broken"])

    def unpublished(name):
        raise AdapterNotInStore(f"no adapter {name!r} in the store; train it first")

    with pytest.raises(AdapterNotInStore, match="train it first"):
        AdapterLoader(builtin.url, unpublished).ensure(["never-trained"])
    with pytest.raises(AdapterLoadFailed, match="does not answer"):
        AdapterLoader(f"http://127.0.0.1:{_free_port()}", lambda name: tmp_path, timeout_s=2).ensure(["x"])


# ---------------------------------------------------------------- the process boundary, with a stand-in vllm

FAKE_VLLM = """\
#!{python}
# Stands in for `vllm serve MODEL ...`: records how it was started, then serves SmolLM2 with the
# built-in server on the host and port it was given (same endpoints, same "base" name).
import json, os, sys
args = sys.argv[1:]
flags = dict(zip(args, args[1:]))
json.dump({{"argv": args, "runtime_lora": os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING")}},
          open({record!r}, "w"))
os.execv(sys.executable, [sys.executable, "-m", "gpu", "serve", "--base", "smollm2",
                          "--host", flags["--host"], "--port", flags["--port"]])
"""


@pytest.mark.model
@pytest.mark.slow
def test_the_node_starts_its_vllm_waits_for_base_loads_adapters_and_stops_it(tmp_path, monkeypatch,
                                                                             store_with_adapters):
    from gpu.adapter_store import fetch_adapter
    from gpu.serving import VllmServing
    from gpu.vllm_server import vllm_command

    store, _ = store_with_adapters
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "started.json"
    fake = bin_dir / "vllm"
    fake.write_text(textwrap.dedent(FAKE_VLLM.format(python=sys.executable, record=str(record))))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    settings = _settings(tmp_path, gpu_ready_timeout_s=600)

    engine = VllmServing(settings, "HuggingFaceTB/SmolLM2-135M-Instruct",
                         lambda name: fetch_adapter(store, name, tmp_path / "adapters"))
    engine.start()
    try:
        started = json.loads(record.read_text())
        assert started["argv"] == vllm_command(settings, "HuggingFaceTB/SmolLM2-135M-Instruct")[1:]
        assert started["runtime_lora"] == "True"
        engine.ensure(["base", "pub-a"])
        assert _ask(engine.url, "pub-a").status_code == 200
        process = engine.server.process
    finally:
        engine.stop()
    assert process.poll() is not None  # its process group is gone with the node
    assert (Path(settings.gpu_workdir) / "vllm.log").is_file()
