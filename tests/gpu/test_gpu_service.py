"""compose.yaml's gpu service and the Dockerfile's gpu target: the model is chosen by FARM_BASE_MODEL,
a hub token and a model cache pass through, and the node's workdir survives a re-creation."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _gpu_service() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["gpu"]


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> host side (a path, possibly ${VAR:-default}, or a named volume)."""
    return {container: host for host, container in (spec.rsplit(":", 1) for spec in service["volumes"])}


def test_the_gpu_service_passes_the_model_the_token_and_the_cache():
    service = _gpu_service()
    env = service["environment"]
    assert env["FARM_BASE_MODEL"].startswith("${FARM_BASE_MODEL")  # chosen by whoever starts it
    assert "HF_TOKEN" in env and env["HF_TOKEN"] is None  # passed through from the shell, never written here
    mounts = _mounts(service)
    assert env["HF_HOME"] in mounts, "the model cache must be a volume: a 7B is not downloaded per re-creation"


def test_the_gpu_nodes_workdir_is_a_volume_not_the_containers_tmp():
    service = _gpu_service()
    workdir = service["environment"]["FARM_GPU_WORKDIR"]
    assert not workdir.startswith("/tmp") and workdir in _mounts(service)


def test_every_farm_gpu_name_in_the_service_is_a_setting():
    from common.settings import Settings

    names = {k for k in _gpu_service()["environment"] if k.startswith("FARM_")}
    fields = {f"FARM_{name.upper()}" for name in Settings.model_fields}
    gpu_names = {n for n in names if n.startswith("FARM_GPU_") or n == "FARM_BASE_MODEL"}
    assert gpu_names and gpu_names <= fields, gpu_names - fields


def test_the_gpu_service_is_one_solo_worker_with_a_gpu_and_serves_the_rollouts():
    service = _gpu_service()
    command = " ".join(service["command"]).split()
    assert "gpu.tasks" in command and command[command.index("--pool") + 1] == "solo"
    assert "common.node_names gpu" in " ".join(service["command"])  # ROLE.REPLICA@HOST like every worker
    assert service["build"]["target"] == "gpu"
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert service["environment"]["FARM_GPU_HOST"] == "0.0.0.0"


def test_the_gpu_image_installs_4bit_support_and_can_add_vllm():
    dockerfile = (ROOT / "Dockerfile").read_text()
    target = dockerfile[dockerfile.index("FROM base AS gpu"):]
    assert "p['cuda']" in target and "VLLM_SPEC" in target and "HF_HOME=" in target
