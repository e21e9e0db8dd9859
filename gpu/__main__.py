"""`python -m gpu ...`: the GPU node's commands.

    python -m gpu serve --base smollm2 --adapters-dir ./adapters --port 8000
    python -m gpu inspect --base smollm2 exports/sft.jsonl --row 3
"""

from __future__ import annotations

import logging

import click

from gpu.inspect import main as inspect_command


@click.group()
def main() -> None:
    """sekfarm GPU node: serve, inspect."""


@main.command()
@click.option("--base", default=None, help="Base model ('smollm2', a .gguf, a model dir, a hub id); default FARM_BASE_MODEL.")
@click.option("--adapters-dir", type=click.Path(file_okay=False), default=None,
              help="Load every peft adapter directory under this one at start, named by its directory name.")
@click.option("--host", default=None, help="Bind address (0.0.0.0 to serve other nodes); default FARM_GPU_HOST.")
@click.option("--port", default=None, type=int, help="Port; default FARM_GPU_PORT.")
@click.option("--window-ms", default=5.0, show_default=True, help="How long the batcher gathers concurrent requests.")
@click.option("--max-batch", default=16, show_default=True, help="Most requests per generate call.")
def serve(base: str | None, adapters_dir: str | None, host: str | None, port: int | None, window_ms: float,
          max_batch: int) -> None:
    """The resident OpenAI-compatible server (POST /v1/chat/completions)."""
    from common.settings import get_settings
    from gpu.server import serve as run

    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(base or settings.base_model, adapters_dir, host=host or settings.gpu_host, port=port or settings.gpu_port,
        window_ms=window_ms, max_batch=max_batch)


main.add_command(inspect_command, "inspect")

if __name__ == "__main__":
    main()
