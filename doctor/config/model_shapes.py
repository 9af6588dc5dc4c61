"""Model shapes (hidden size, layers, vocab ...) for the VRAM estimator, without loading weights.

Where a shape comes from, in order: a local model directory or the local Hugging Face cache
(`config.json` as the user will load it), the bundled table checks/data/model_shapes.json, and
finally the hub (config.json only, in a child process with a short timeout). The hub step can be
switched off (DOCTOR_OFFLINE=1, HF_HUB_OFFLINE=1, or `set_network(False)`); tests switch it off.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

HUB_TIMEOUT_S = 6.0
_network_enabled = True


@dataclass
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool = False
    fused_projections: bool = False      # Phi-3 style qkv_proj / gate_up_proj
    name: str = ""                       # the model this describes
    source: str = ""                     # hf-cache:<path> | local:<path> | table:<hf id> | hub:<repo>
    prequantized: Optional[str] = None   # "4bit" | "8bit" when config.json carries a bnb quantization_config
    double_quant: Optional[bool] = None  # bnb_4bit_use_double_quant of a pre-quantized checkpoint
    model_type: str = ""                 # config.json's model_type (llama, qwen2, gemma2 ...), "" if unknown
    max_position: Optional[int] = None   # max_position_embeddings: the context window (None: unknown)
    # Mixture of experts (0 = dense). For a MoE shape `intermediate` is the FFN width one token goes
    # through (its top-k routed experts + the shared experts), so the dense arithmetic gives the
    # active path; doctor/vram/workloads.py adds the experts a token does not visit.
    num_experts: int = 0                 # routed experts per MoE layer
    experts_per_tok: int = 0             # top-k
    moe_intermediate: int = 0            # one routed expert's FFN width
    shared_intermediate: int = 0         # all shared experts' FFN width together (0 = none)
    # Vision-language models (0 = text only): the vision tower + projector, from vision_config.
    vision_params: int = 0
    vision_hidden: int = 0
    vision_layers: int = 0
    vision_patches: int = 0              # patches one image sends through the vision tower
    image_tokens: int = 0                # tokens one image adds to the language model's sequence
    image_cross_attention: bool = False  # Llama 3.2 Vision: image states reach the LM by cross-attention

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0 and self.experts_per_tok > 0

    @property
    def is_vlm(self) -> bool:
        return self.vision_params > 0

    def _family(self) -> dict:
        from doctor.knowledge import load

        return load("model_shapes").get("families", {}).get(self.model_type, {})

    @property
    def norms_per_layer(self) -> int:
        return int(self._family().get("norms_per_layer", 2))

    @property
    def attn_softcap(self) -> bool:
        return bool(self._family().get("attn_softcap", False))

    @property
    def logits_extra_bytes(self) -> float:
        return float(self._family().get("logits_extra_bytes", 0))

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each decoder projection, Llama naming."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                "o_proj": (self.q_dim, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Parameters of the quantizable projections, all layers."""
        return self.layers * sum(a * b for a, b in self.module_dims().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.lm_head_params + self.norm_params


@dataclass
class ShapeLookup:
    shape: Optional[ModelShape]
    tried: list[str] = field(default_factory=list)   # where we looked, for the "unknown shape" finding


def set_network(enabled: bool) -> None:
    """Allow or forbid the hub lookup (tests forbid it)."""
    global _network_enabled
    _network_enabled = enabled


def network_allowed() -> bool:
    if not _network_enabled:
        return False
    env = os.environ
    return not any(env.get(v, "").strip().lower() in ("1", "true", "yes")
                   for v in ("DOCTOR_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


# -- names ----------------------------------------------------------------------------------------

# Tokens that mark a variant of the same architecture (chat tuning, quantized upload, packaging).
_NOISE = {"instruct", "it", "chat", "hf", "bnb", "4bit", "8bit", "unsloth", "base", "pt", "dynamic",
          "gguf", "awq", "gptq", "fp8", "fp16", "bf16", "nf4", "merged"}


def normalize_name(name: str) -> str:
    """'unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit' -> 'llama-3.1-8b' (the table's alias form)."""
    last = name.strip().rstrip("/").replace("\\", "/").split("/")[-1].lower().replace("_", "-")
    tokens = [t for t in last.split("-") if t]
    if tokens and tokens[0] == "meta":
        tokens = tokens[1:]
    return "-".join(t for t in tokens if t not in _NOISE)


def table_lookup(name: str) -> Optional[ModelShape]:
    """The bundled shape for a model name or any of its variants, else None."""
    from doctor.knowledge import load

    norm = normalize_name(name)
    rows = load("model_shapes")["models"] + workload_rows()
    by_alias = {alias: row for row in rows for alias in row["aliases"]}
    by_alias.update({normalize_name(row["hf_id"]): row for row in rows})
    row = by_alias.get(norm)
    if row is None:   # longest alias that is a prefix at a '-' boundary: 'qwen3-8b-foo' -> 'qwen3-8b'
        prefixes = [a for a in by_alias if norm.startswith(a + "-")]
        row = by_alias[max(prefixes, key=len)] if prefixes else None
    if row is None:
        return None
    return ModelShape(hidden=row["hidden"], intermediate=row["intermediate"], layers=row["layers"],
                      heads=row["heads"], kv_heads=row["kv_heads"], head_dim=row["head_dim"],
                      vocab=row["vocab"], tied_embeddings=row["tied_embeddings"],
                      fused_projections=row.get("fused_projections", False),
                      name=row["hf_id"], source=f"table:{row['hf_id']}", model_type=row.get("model_type", ""),
                      max_position=row.get("max_position"),
                      **{k: row[k] for k in WORKLOAD_SHAPE_KEYS if k in row})


# MoE / vision fields a row of checks/data/model_shapes_moe_vlm.json may carry (ModelShape names).
WORKLOAD_SHAPE_KEYS = ("num_experts", "experts_per_tok", "moe_intermediate", "shared_intermediate",
                       "vision_params", "vision_hidden", "vision_layers", "vision_patches", "image_tokens",
                       "image_cross_attention")


def workload_rows() -> list[dict]:
    """MoE and vision-language rows (a separate file; they win over a text-only row of the same name)."""
    from doctor.knowledge import load

    try:
        return list(load("model_shapes_moe_vlm")["models"])
    except (OSError, KeyError, ValueError):
        return []


# -- config.json ------------------------------------------------------------------------------------

class UnsupportedShape(ValueError):
    """config.json describes something the estimator does not model (MoE, encoder-decoder ...)."""


def shape_from_config(cfg: dict, name: str = "", source: str = "") -> ModelShape:
    """A ModelShape from a Hugging Face config.json dict (text_config of multimodal models)."""
    full_cfg = cfg
    if isinstance(cfg.get("text_config"), dict) and "hidden_size" not in cfg:
        cfg = {**cfg, **cfg["text_config"]}
    vision = vision_fields(full_cfg)
    moe = moe_fields(cfg)
    hidden = cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    layers = cfg.get("num_hidden_layers") or cfg.get("n_layer")
    heads = cfg.get("num_attention_heads") or cfg.get("n_head")
    vocab = cfg.get("vocab_size")
    if not all(isinstance(v, int) and v > 0 for v in (hidden, layers, heads, vocab)):
        raise UnsupportedShape("config.json lacks hidden_size / num_hidden_layers / "
                               "num_attention_heads / vocab_size")
    inter = cfg.get("intermediate_size") or cfg.get("n_inner") or cfg.get("ffn_dim") or 4 * hidden
    if moe:   # the width one token goes through: top-k routed experts + the shared ones
        inter = moe["experts_per_tok"] * moe["moe_intermediate"] + moe["shared_intermediate"]
    model_type = str(cfg.get("model_type", ""))
    tied = cfg.get("tie_word_embeddings")
    if tied is None:   # the per-architecture default: Gemma ties, Llama/Qwen/Mistral do not
        tied = model_type.startswith("gemma")
    quant = cfg.get("quantization_config") or {}
    prequant = "4bit" if quant.get("load_in_4bit") else "8bit" if quant.get("load_in_8bit") else None
    return ModelShape(
        hidden=hidden, intermediate=inter, layers=layers, heads=heads,
        kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or hidden // heads, vocab=vocab, tied_embeddings=bool(tied),
        # Phi-3/Phi-4 fuse qkv_proj and gate_up_proj (modeling_phi3.py); PhiMoE does not: its
        # attention is LlamaAttention (transformers models/phimoe/modular_phimoe.py) and its experts
        # Mixtral's w1/w2/w3, so LoRA targets the separate projections there.
        fused_projections=model_type in ("phi3", "phi4"),
        name=name, source=source, prequantized=prequant, model_type=model_type,
        max_position=mp if isinstance(mp := cfg.get("max_position_embeddings"), int) and mp > 0 else None,
        double_quant=quant.get("bnb_4bit_use_double_quant") if prequant == "4bit" else None,
        **moe, **vision)


def _int(cfg: dict, *keys: str) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return 0


def moe_fields(cfg: dict) -> dict:
    """ModelShape's MoE fields from a (text) config.json; {} for a dense model. Spellings: Qwen MoE
    num_experts + moe_intermediate_size (+ shared_expert_intermediate_size), Mixtral / gpt-oss
    num_local_experts + intermediate_size (per expert), DeepSeek n_routed_experts + n_shared_experts."""
    experts = _int(cfg, "num_experts", "num_local_experts", "n_routed_experts")
    top_k = _int(cfg, "num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_topk")
    if not experts or not top_k:
        if experts:
            raise UnsupportedShape("mixture-of-experts config.json without num_experts_per_tok")
        return {}
    expert_i = _int(cfg, "moe_intermediate_size", "expert_intermediate_size") or _int(cfg, "intermediate_size")
    if not expert_i:
        raise UnsupportedShape("mixture-of-experts config.json without an expert FFN size")
    shared = _int(cfg, "shared_expert_intermediate_size") or _int(cfg, "n_shared_experts", "num_shared_experts") * expert_i
    return {"num_experts": experts, "experts_per_tok": top_k, "moe_intermediate": expert_i,
            "shared_intermediate": shared}


def vision_fields(cfg: dict) -> dict:
    """ModelShape's vision fields from a VLM's config.json vision_config ({} for text-only): the tower's
    parameters (attention 4*h^2 and MLP per layer, gated MLPs 3 matrices), the projector into the
    language model, patches per image and the image tokens the language model sees."""
    vc = cfg.get("vision_config")
    if not isinstance(vc, dict):
        return {}
    vh = _int(vc, "hidden_size", "embed_dim")
    layers = _int(vc, "num_hidden_layers", "depth") + _int(vc, "num_global_layers")
    if not vh or not layers:
        return {}
    vi = _int(vc, "intermediate_size") or 4 * vh
    gated = str(vc.get("hidden_act", "")).lower() in ("silu", "swiglu")
    per_layer = 4 * vh * vh + (3 if gated else 2) * vh * vi
    patch = _int(vc, "patch_size") or 14
    image = _int(vc, "image_size") or 0
    text_h = _int(cfg.get("text_config") or {}, "hidden_size") or _int(cfg, "hidden_size")
    merge = _int(vc, "spatial_merge_size") or 1
    proj_in = _int(vc, "vision_output_dim") or vh * merge * merge   # Mllama concatenates 5 layers' states
    out_h = _int(vc, "out_hidden_size") or text_h
    projector = proj_in * out_h + (proj_in * proj_in if merge > 1 else 0)
    patches = (image // patch) ** 2 if image else 0
    tokens = _int(cfg, "mm_tokens_per_image") or (patches // (merge * merge) if patches else 0)
    cross = bool(cfg.get("cross_attention_layers") or (cfg.get("text_config") or {}).get("cross_attention_layers"))
    return {"vision_params": layers * per_layer + 3 * patch * patch * vh + projector, "vision_hidden": vh,
            "vision_layers": layers, "vision_patches": patches, "image_tokens": 0 if cross else tokens,
            "image_cross_attention": cross}


def hub_cache_dirs() -> list[Path]:
    env = os.environ
    dirs = []
    if env.get("HF_HUB_CACHE"):
        dirs.append(Path(env["HF_HUB_CACHE"]))
    if env.get("HUGGINGFACE_HUB_CACHE"):
        dirs.append(Path(env["HUGGINGFACE_HUB_CACHE"]))
    if env.get("HF_HOME"):
        dirs.append(Path(env["HF_HOME"]) / "hub")
    if env.get("TRANSFORMERS_CACHE"):
        dirs.append(Path(env["TRANSFORMERS_CACHE"]))
    xdg = env.get("XDG_CACHE_HOME")
    dirs.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    seen, out = set(), []
    for d in dirs:
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def cached_config_path(repo_id: str) -> Optional[Path]:
    """The newest snapshot's config.json of repo_id in the local hub cache."""
    if repo_id.count("/") != 1:
        return None
    folder = "models--" + repo_id.replace("/", "--")
    found = []
    for base in hub_cache_dirs():
        try:
            found += [p for p in (base / folder / "snapshots").glob("*/config.json") if p.is_file()]
        except OSError:
            continue
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _read_json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


_FETCH_CODE = r"""
import json, os, sys, urllib.request
url = os.environ["DOCTOR_HUB_URL"]
with urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "finetune-doctor"}),
                            timeout=float(os.environ["DOCTOR_HUB_TIMEOUT"])) as r:
    data = json.loads(r.read(2_000_000).decode("utf-8"))
print(os.environ["DOCTOR_MARKER"] + json.dumps(data))
"""


def fetch_hub_config(repo_id: str, timeout: float = HUB_TIMEOUT_S) -> Optional[dict]:
    """config.json of a hub repo, fetched in a child (a DNS stall cannot hang the doctor)."""
    from doctor.runner import RESULT_MARKER, run_python

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    env = dict(os.environ, DOCTOR_HUB_URL=f"{endpoint}/{repo_id}/resolve/main/config.json",
               DOCTOR_HUB_TIMEOUT=str(timeout), DOCTOR_MARKER=RESULT_MARKER)
    _res, payload = run_python(_FETCH_CODE, timeout=timeout + 2, env=env)
    return payload if isinstance(payload, dict) else None


_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_shape(name: Optional[str], allow_network: bool = True, _depth: int = 0) -> ShapeLookup:
    """Find the shape of `name` (hub id or local path); never raises."""
    if not name:
        return ShapeLookup(None, ["no model name in the config"])
    tried: list[str] = []
    local = Path(name).expanduser()
    try:
        if local.is_dir():
            if (local / "config.json").is_file():
                tried.append(f"local {local / 'config.json'}")
                return ShapeLookup(shape_from_config(_read_json(local / "config.json"), name,
                                                     f"local:{local / 'config.json'}"), tried)
            adapter = local / "adapter_config.json"
            if adapter.is_file() and _depth == 0:   # a LoRA checkpoint: the shape of its base model
                base = _read_json(adapter).get("base_model_name_or_path")
                tried.append(f"adapter {adapter} -> {base}")
                sub = resolve_shape(base, allow_network, _depth + 1)
                return ShapeLookup(sub.shape, tried + sub.tried)
        cached = cached_config_path(name)
        if cached is not None:
            tried.append(f"hf cache {cached}")
            return ShapeLookup(shape_from_config(_read_json(cached), name, f"hf-cache:{cached}"), tried)
    except UnsupportedShape as exc:
        return ShapeLookup(None, tried + [str(exc)])
    except (OSError, ValueError) as exc:
        tried.append(f"unreadable config.json ({type(exc).__name__}: {exc})")
    tried.append("local hub cache")
    shape = table_lookup(name)
    if shape is not None:
        shape.name = name
        return ShapeLookup(shape, tried + [shape.source])
    tried.append("bundled table")
    if allow_network and network_allowed() and _REPO_RE.match(name):
        cfg = fetch_hub_config(name)
        tried.append("hub" if cfg else "hub (no answer)")
        if cfg:
            try:
                return ShapeLookup(shape_from_config(cfg, name, f"hub:{name}"), tried)
            except UnsupportedShape as exc:
                return ShapeLookup(None, tried + [str(exc)])
    return ShapeLookup(None, tried)
