"""What the GPU node will hold in memory, computed before anything is loaded, and a refusal with the
numbers when it will not fit.

    shape = model_shape(load_config("Qwen/Qwen2.5-7B-Instruct"))     # a meta-device model: no weights
    plan = plan_memory(shape, four_bit=True, tokens_per_batch=4096, gradient_checkpointing=True)
    plan.check(free_bytes)            # MemoryPlanRefused: which part is too big and what to change

The plan counts, in bytes:
- weights at their dtype: 4-bit NF4 for every linear layer of the decoder (with its double-quantised
  block scales), the compute dtype for the rest (embeddings, norms, output head, biases);
- the LoRA weights and their gradients (fp32) and AdamW's two fp32 moments;
- activations for `tokens_per_batch` tokens: with gradient checkpointing, each decoder layer keeps
  only its input and one layer is recomputed at a time; without it, every layer keeps everything its
  backward needs (norm inputs in fp32, the LoRA inputs, q/k/v and the attention output, the four
  MLP intermediates);
- the output head's logits for every token (the loss upcasts them to fp32 and keeps the log-softmax);
- the serving KV cache of the built-in server, when it serves from the same GPU;
- an allowance for the CUDA context and the allocator's slack.
They are estimates that err on the large side (the logits assume every token is supervised), so a
plan that fits leaves room; `benchmarks/gpu_smoke.py` reports the peak a real run reached.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gpu.errors import GpuError

GIB = 1024 ** 3
# NF4: 4 bits per weight, one 8-bit scale per block of 64 and one fp32 scale per 256 blocks (double quantisation).
NF4_BYTES_PER_PARAM = 0.5 + 1 / 64 + 4 / (64 * 256)
# A base this small trains on a CPU in minutes: the node may run it there without being told to.
CPU_AUTO_MAX_PARAMS = 1_000_000_000
CONTEXT_BYTES = GIB  # CUDA context, cuBLAS workspaces
SLACK = 0.05  # the caching allocator's fragmentation


class MemoryPlanRefused(GpuError, MemoryError):
    """The plan does not fit the memory there is; the message has the numbers and what to change."""


class NoGpu(GpuError, RuntimeError):
    """A GPU-sized job on a node whose torch sees no CUDA device."""


class ModelShape(BaseModel):
    """What the plan needs to know of a model, read off a meta-device instance of its config."""

    params: int = Field(description="All parameters (tied embeddings counted once).")
    quantizable_params: int = Field(description="Weights of the decoder's linear layers (what 4-bit quantises).")
    layers: int
    hidden: int
    kv_dim: int = Field(description="Width of the keys (and of the values): kv heads x head dim.")
    intermediate: int
    vocab: int
    lora_shapes: list[tuple[int, int]] = Field(description="(in, out) of every linear layer LoRA targets ('all-linear').")


def model_shape(config: Any) -> ModelShape:
    """Count the model's parts on a meta-device instance of `config` (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    head = model.get_output_embeddings()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return ModelShape(
        params=sum(p.numel() for p in model.parameters()),
        quantizable_params=sum(m.weight.numel() for m in linears),
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        kv_dim=kv_heads * head_dim,
        intermediate=text.intermediate_size,
        vocab=text.vocab_size,
        lora_shapes=[(m.in_features, m.out_features) for m in linears],
    )


class MemoryPlan(BaseModel):
    """Bytes the node needs, by part; `check` compares them with what the device has free."""

    model: str
    weights_dtype: str = Field(description="'nf4' or the dtype the weights are held in.")
    weights: int
    lora: int = Field(description="LoRA weights and their gradients (fp32).")
    optimizer: int = Field(description="AdamW's two fp32 moments per LoRA weight.")
    tokens_per_batch: int
    gradient_checkpointing: bool
    activations: int = Field(description="Activations kept for backward at tokens_per_batch, as configured.")
    activations_with_checkpointing: int
    activations_without_checkpointing: int
    logits: int = Field(description="The output head's logits and the loss's fp32 copies, every token supervised.")
    serving: int = Field(0, description="The built-in server's KV cache on this device.")
    per_token: int = Field(description="Bytes each more token per batch costs (activations + logits).")

    @property
    def training(self) -> int:
        return self.lora + self.optimizer + self.activations + self.logits

    def total(self, loaded: bool = False) -> int:
        """Bytes still to be taken: everything, or (`loaded`) all but the weights and serving already resident."""
        held = self.training if loaded else self.weights + self.training + self.serving
        return int(held * (1 + SLACK)) + (0 if loaded else CONTEXT_BYTES)

    def describe(self) -> str:
        g = lambda n: f"{n / GIB:.1f} GiB"  # noqa: E731
        other = "off" if self.gradient_checkpointing else "on"
        other_bytes = (self.activations_without_checkpointing if self.gradient_checkpointing
                       else self.activations_with_checkpointing)
        return (f"weights {g(self.weights)} ({self.weights_dtype}), LoRA + gradients {g(self.lora)}, "
                f"optimizer {g(self.optimizer)}, activations {g(self.activations)} at {self.tokens_per_batch} "
                f"tokens per batch with gradient checkpointing {'on' if self.gradient_checkpointing else 'off'} "
                f"({g(other_bytes)} with it {other}), logits {g(self.logits)}, serving KV {g(self.serving)}")

    def max_tokens_per_batch(self, free_bytes: int, loaded: bool = False) -> int:
        """The largest tokens_per_batch that fits `free_bytes` with everything else as planned."""
        fixed = self.total(loaded) - int((self.activations + self.logits) * (1 + SLACK))
        return max(0, int((free_bytes - fixed) / (self.per_token * (1 + SLACK))))

    def check(self, free_bytes: int, loaded: bool = False) -> None:
        """MemoryPlanRefused unless the plan fits `free_bytes` (`loaded`: the weights are already in)."""
        need = self.total(loaded)
        if need <= free_bytes:
            return
        fits = self.max_tokens_per_batch(free_bytes, loaded)
        hints = []
        if fits >= 256:
            hints.append(f"lower tokens_per_batch in the train config to {fits} or less")
        if not self.gradient_checkpointing:
            hints.append("turn gradient_checkpointing on in the train config")
        if self.weights_dtype != "nf4" and not loaded:
            hints.append("load the base in 4-bit (FARM_GPU_QUANTIZE=4bit)")
        if self.serving and not loaded:
            hints.append("serve with vLLM on another GPU (FARM_GPU_SERVE=vllm, FARM_GPU_VLLM_URL)")
        hints.append("or pick a smaller FARM_BASE_MODEL")
        raise MemoryPlanRefused(
            f"{self.model} needs about {need / GIB:.1f} GiB {'more ' if loaded else ''}on this GPU and "
            f"{free_bytes / GIB:.1f} GiB are free: {self.describe()}, plus the CUDA context and allocator slack. "
            f"To fit: {'; '.join(hints)}.")


def _activation_bytes_per_token_and_layer(shape: ModelShape, e: int) -> int:
    """What one decoder layer keeps for backward per token, with `e` bytes per computed value."""
    h, kv, i = shape.hidden, shape.kv_dim, shape.intermediate
    norms = 2 * (4 * h + e * h)  # two RMSNorms: the fp32 upcast of their input, and their output
    lora_inputs = e * (6 * h + i)  # each LoRA layer's own copy of its input (q, k, v, o, gate, up: h; down: i)
    attention = e * (h + 2 * kv) + e * (h + kv) + e * 3 * h + e * h  # projections, rotated q/k, sdpa's q/k/v, output
    mlp = 4 * e * i  # gate, up, the activation, and their product
    return norms + lora_inputs + attention + mlp


def plan_memory(shape: ModelShape, *, model: str = "model", four_bit: bool, weight_bytes: int = 2,
                compute_bytes: int = 2, lora_r: int = 16, tokens_per_batch: int = 4096,
                gradient_checkpointing: bool = True, serving_tokens: int = 0) -> MemoryPlan:
    """The plan for training LoRA (all linear layers, rank `lora_r`) on one `shape` model.

    `weight_bytes`: bytes per weight of an unquantized model (2 for bf16, 4 for fp32) and, when
    `four_bit`, of the weights 4-bit leaves alone. `compute_bytes`: of activations (2 under bf16
    autocast). `serving_tokens`: tokens the built-in server's KV cache holds at once (batch x length)."""
    e = compute_bytes
    if four_bit:
        weights = int(shape.quantizable_params * NF4_BYTES_PER_PARAM
                      + (shape.params - shape.quantizable_params) * weight_bytes)
    else:
        weights = shape.params * weight_bytes
    lora_params = sum(lora_r * (i + o) for i, o in shape.lora_shapes)
    per_layer = _activation_bytes_per_token_and_layer(shape, e)
    # Checkpointing keeps each layer's input and recomputes one layer (and its gradients) at a time.
    with_ckpt = shape.layers * e * shape.hidden + 2 * per_layer
    without = shape.layers * per_layer + e * shape.hidden
    logits = shape.vocab * (e + 4 + 4)  # the head's output, the loss's fp32 copy, the saved log-softmax
    per_token = (with_ckpt if gradient_checkpointing else without) + logits
    return MemoryPlan(
        model=model,
        weights_dtype="nf4" if four_bit else {2: "bfloat16", 4: "float32"}.get(weight_bytes, f"{weight_bytes}-byte"),
        weights=weights,
        lora=lora_params * 8,
        optimizer=lora_params * 8,
        tokens_per_batch=tokens_per_batch,
        gradient_checkpointing=gradient_checkpointing,
        activations=tokens_per_batch * (with_ckpt if gradient_checkpointing else without),
        activations_with_checkpointing=tokens_per_batch * with_ckpt,
        activations_without_checkpointing=tokens_per_batch * without,
        logits=tokens_per_batch * logits,
        serving=serving_tokens * shape.layers * 2 * shape.kv_dim * e,
        per_token=per_token,
    )


def choose_device(setting: str, base: str) -> str:
    """'cuda' or 'cpu' for the node (FARM_GPU_DEVICE): a node whose torch sees no GPU runs only a
    small base on the CPU unless told to; anything bigger is refused with the fix."""
    import torch

    if setting == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    cuda_build = torch.version.cuda or "none (a CPU build)"
    why = (f"torch {torch.__version__} sees no CUDA device (its CUDA: {cuda_build}); check the NVIDIA driver and "
           "the container's GPU reservation, or install a CUDA build of torch")
    if setting == "cuda":
        raise NoGpu(f"FARM_GPU_DEVICE=cuda but {why}")
    params = base_params(base)
    if params > CPU_AUTO_MAX_PARAMS:
        raise NoGpu(f"{why}. {base} has {params / 1e9:.1f} B parameters: training it on a CPU would take days. "
                    "Set FARM_GPU_DEVICE=cpu to run it on the CPU anyway.")
    return "cpu"


def base_params(base: str) -> int:
    """Parameters of a base model, from its config alone."""
    from gpu.model import SMOLLM2, load_config

    if base == SMOLLM2:  # the embedded model: known, and its GGUF need not be parsed
        return 135_000_000
    return model_shape(load_config(base)).params
