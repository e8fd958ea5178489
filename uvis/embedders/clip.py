"""CLIP crop and prompt embeddings through open_clip.

``pretrained`` selects the weights:

- an open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``, …): downloaded once into
  ``$UVIS_CACHE/open_clip`` (default ``~/.cache/uvis/open_clip``). With no network
  (checked in ~1.5 s) or ``UVIS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``, only cached files
  are used (Hugging Face cache lookups with ``local_files_only=True``; also the default
  Hugging Face cache and ``~/.cache/clip``); if none is found a
  :class:`MissingWeightsError` names the hub repo and file and how to get them.
- a local checkpoint file path (``.pt``, ``.pth``, ``.bin``, ``.safetensors``, ``.npz``).
- ``""``, ``"none"`` or ``"random"``: random initialisation, seeded (``seed``) so every
  process builds the same model; the embedder ``name`` then says ``random``.

Image preprocessing is the model's own (input size, mean and std from its open_clip
preprocess config) applied to letterboxed crops, see :mod:`uvis.embedders.crops`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
import torch

from uvis import netcheck
from uvis.embedders.crops import embed_in_batches, resolve_device
from uvis.embedders.testing import TINY_CLIP_NAME, register_tiny_clip
from uvis.errors import BadInputError, ConfigError, MissingWeightsError, require
from uvis.masks import RLE

RANDOM_TAGS: tuple[str, ...] = ("", "none", "random")
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")
INSTALL_OPEN_CLIP = "pip install open_clip_torch"


def default_cache_dir() -> Path:
    """Where open_clip weights are downloaded: ``$UVIS_CACHE/open_clip`` (default ``~/.cache/uvis``)."""
    from uvis.weights import cache_root

    return cache_root() / "open_clip"


@dataclass(frozen=True)
class ClipWeights:
    """Resolved weights of a CLIP model.

    Attributes:
        checkpoint: local file to load, or None for random initialisation.
        label: how the weights appear in the embedder name (tag, ``file:…`` or ``random-seed0``).
        quick_gelu: the weights were trained with QuickGELU (from the tag's config).
        preprocess: the tag's preprocessing overrides (mean, std, interpolation, resize_mode).
    """

    checkpoint: str | None
    label: str
    quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)


def _file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            sha.update(chunk)
    return sha.hexdigest()[:12]


def _hub_files(cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """(repo id, candidate file names, safetensors first) of a tag's ``hf_hub`` entry."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo, filename = os.path.split(cfg["hf_hub"])  # 'org/name/' -> ('org/name', '') as open_clip does
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return repo, names


def _find_cached(cfg: dict[str, Any], cache_dir: Path) -> str | None:
    """A cached copy of a tag's weights without touching the network, or None."""
    if cfg.get("hf_hub"):
        from huggingface_hub import hf_hub_download

        repo, names = _hub_files(cfg)
        for cache in (str(cache_dir), None):
            for name in names:
                try:
                    return hf_hub_download(repo, name, cache_dir=cache, local_files_only=True)
                except Exception:  # noqa: BLE001 - any failure means "not cached"
                    continue
    if cfg.get("url"):
        name = os.path.basename(cfg["url"])
        for folder in (cache_dir, Path("~/.cache/clip").expanduser()):
            if (folder / name).is_file():
                return str(folder / name)
    return None


def _missing_message(model_name: str, tag: str, cfg: dict[str, Any], cache_dir: Path, reason: str) -> str:
    wanted = []
    if cfg.get("hf_hub"):
        repo, names = _hub_files(cfg)
        wanted.append(f"Hugging Face repo '{repo}' file {' or '.join(names)}")
    if cfg.get("url"):
        wanted.append(f"{cfg['url']}")
    model_hint = model_name
    if cfg.get("quick_gelu") and "quickgelu" not in model_name.lower():
        model_hint = f"{model_name}-quickgelu"
    return (
        f"CLIP weights for open_clip model '{model_name}' pretrained '{tag}' are missing: "
        f"{' / '.join(wanted)} is not cached ({cache_dir}, the default Hugging Face cache "
        f"or ~/.cache/clip) and downloads are off because {reason}. To get them: run once with "
        f"network access (they are downloaded into {cache_dir}), or download the file yourself "
        f"and pass its path: --clip-model {model_hint} --clip-pretrained /path/to/file "
        f"(config: embedder.clip_model / embedder.clip_pretrained)."
    )


def cached_clip_weights(model_name: str, pretrained: str, *, cache_dir: Path | None = None) -> str | None:
    """Path of the cached weights of an open_clip pretrained tag, or None; never uses the network.

    Raises:
        BadInputError: ``pretrained`` is not a pretrained tag of ``model_name``.
    """
    import open_clip

    if model_name == TINY_CLIP_NAME:
        register_tiny_clip()
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        raise BadInputError(f"'{pretrained}' is not a pretrained tag of open_clip model {model_name}")
    return _find_cached(cfg, cache_dir or default_cache_dir())


def resolve_clip_weights(
    model_name: str, pretrained: str, *, seed: int = 0, cache_dir: Path | None = None
) -> ClipWeights:
    """Find (or download) the weights named by ``pretrained`` for an open_clip model.

    Raises:
        MissingWeightsError: a checkpoint path does not exist, or a tag's weights are not
            cached and the network is off or unreachable (decided in ~1.5 s), or the
            download failed. The message names the file and how to get it.
        ConfigError: ``pretrained`` is neither a known tag of the model nor a path.
    """
    import open_clip

    cache_dir = cache_dir or default_cache_dir()
    tag = (pretrained or "").strip()
    if tag.lower() in RANDOM_TAGS:
        return ClipWeights(None, f"random-seed{seed}")
    path = Path(tag).expanduser()
    if path.is_file():
        return ClipWeights(str(path), f"file:{path.name}:{_file_digest(path)}")
    if os.sep in tag or "/" in tag or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise MissingWeightsError(
            f"CLIP checkpoint file not found: {path} (embedder.clip_pretrained / --clip-pretrained); "
            f"pass an existing file, an open_clip pretrained tag, or 'none' for random weights"
        )
    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise ConfigError(
            f"embedder.clip_pretrained '{tag}' is not a pretrained tag of open_clip model '{model_name}' "
            f"nor an existing file; known tags: {', '.join(tags) or 'none'}; 'none' gives random weights"
        )
    overrides = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    quick_gelu = bool(cfg.get("quick_gelu", False))
    if "file" in cfg:
        checkpoint: str | None = cfg["file"]
    else:
        host = netcheck.DEFAULT_HOST if cfg.get("hf_hub") else urlsplit(cfg.get("url", "")).hostname
        reason = netcheck.is_offline(host or netcheck.DEFAULT_HOST)
        if reason:
            checkpoint = _find_cached(cfg, cache_dir)
            if checkpoint is None:
                raise MissingWeightsError(_missing_message(model_name, tag, cfg, cache_dir, reason))
        else:
            cache_dir.mkdir(parents=True, exist_ok=True)
            try:
                checkpoint = open_clip.download_pretrained(cfg, cache_dir=str(cache_dir))
            except Exception as exc:  # noqa: BLE001 - hub/url errors vary
                checkpoint = _find_cached(cfg, cache_dir)
                if checkpoint is None:
                    raise MissingWeightsError(
                        _missing_message(model_name, tag, cfg, cache_dir, f"the download failed ({exc})")
                    ) from exc
    return ClipWeights(checkpoint, tag, quick_gelu, overrides)


class ClipEmbedder:
    """Crop and prompt embeddings of an open_clip model (implements ``Embedder``).

    Args:
        model_name: open_clip architecture (``open_clip.list_models()``), e.g. ``ViT-B-32``;
            ``uvis-tiny-vit`` is the tiny test ViT (registered on demand).
        pretrained: open_clip tag, local checkpoint path, or ``none`` for random weights.
        device: torch device (``cpu``, ``cuda``, ``cuda:1``).
        batch_size: crops (or prompts) per forward pass, >= 1.
        padding: crop context per side as a fraction of the box width/height, >= 0.
        grey_background: grey (128) the crop pixels outside the instance mask.
        seed: RNG seed of random initialisation (ignored with real weights).
        cache_dir: download cache (default ``$UVIS_CACHE/open_clip``).

    Attributes:
        name: ``clip:<model>:<tag | file:NAME:SHA12 | random-seedS>``.
        dim: joint embedding dimension D.
        logit_scale: ``exp(model.logit_scale)`` (100 for OpenAI CLIP).
        image_size: (S_h, S_w) model input; ``mean``/``std``: its normalisation.
    """

    has_text: bool = True

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str = "openai",
        *,
        device: str = "cpu",
        batch_size: int = 64,
        padding: float = 0.1,
        grey_background: bool = False,
        seed: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        open_clip = require("open_clip", INSTALL_OPEN_CLIP)
        model_name = model_name.replace("/", "-")  # 'ViT-B/32' (OpenAI spelling) -> 'ViT-B-32'
        if batch_size < 1:
            raise ConfigError(f"embedder.batch_size must be >= 1, got {batch_size}")
        if padding < 0:
            raise ConfigError(f"embedder.crop_padding must be >= 0, got {padding}")
        if model_name == TINY_CLIP_NAME:
            register_tiny_clip(model_name)
        if model_name not in open_clip.list_models():
            raise ConfigError(
                f"embedder.clip_model '{model_name}' is not an open_clip model; "
                f"e.g. ViT-B-32, ViT-B-16, ViT-L-14, {TINY_CLIP_NAME} (see open_clip.list_models())"
            )
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.padding = float(padding)
        self.grey_background = bool(grey_background)
        weights = resolve_clip_weights(
            model_name, pretrained, seed=seed, cache_dir=Path(cache_dir) if cache_dir else None
        )
        self.model = self._build(open_clip, model_name, weights, seed)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        pp = open_clip.get_model_preprocess_cfg(self.model)
        size = pp["size"]
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.mean: tuple[float, ...] = tuple(float(v) for v in pp["mean"])
        self.std: tuple[float, ...] = tuple(float(v) for v in pp["std"])
        self.name = f"clip:{model_name}:{weights.label}"
        self.logit_scale = float(self.model.logit_scale.detach().exp().item())
        self.dim = self._embed_dim()

    def _build(self, open_clip: Any, model_name: str, weights: ClipWeights, seed: int) -> torch.nn.Module:
        kwargs: dict[str, Any] = dict(device=self.device, pretrained_text=False)
        try:
            if weights.checkpoint is None:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = open_clip.create_model(model_name, pretrained=None, **kwargs)
            else:
                model = open_clip.create_model(
                    model_name,
                    pretrained=weights.checkpoint,
                    force_quick_gelu=weights.quick_gelu,
                    force_preprocess_cfg=weights.preprocess or None,
                    **kwargs,
                )
        except MissingWeightsError:
            raise
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            raise BadInputError(
                f"cannot build open_clip model '{model_name}' from {weights.checkpoint or 'random init'}: {exc}"
            ) from exc
        return model.eval()

    def _embed_dim(self) -> int:
        dim = getattr(self.model.visual, "output_dim", None)
        if isinstance(dim, int):
            return dim
        with torch.inference_mode():
            probe = torch.zeros((1, 3, *self.image_size), device=self.device)
            return int(self.model.encode_image(probe).shape[-1])

    def embed_crops(self, frame: np.ndarray, boxes: np.ndarray, masks: Sequence[RLE] | None = None) -> np.ndarray:
        """Embed the box crops of one frame.

        Args:
            frame: RGB uint8 (H, W, 3).
            boxes: (N, 4) xyxy pixels.
            masks: N RLEs at (H, W); needed only when ``grey_background``.
        Returns:
            (N, D) float32, rows L2-normalised ((0, D) for no boxes).
        """
        return embed_in_batches(
            self.model.encode_image,
            frame,
            boxes,
            masks,
            dim=self.dim,
            batch_size=self.batch_size,
            device=self.device,
            padding=self.padding,
            grey_background=self.grey_background,
            out_size=self.image_size,
            mean=self.mean,
            std=self.std,
        )

    def encode_text(self, prompts: Sequence[str]) -> np.ndarray:
        """(P, D) float32 L2-normalised text embeddings, ``batch_size`` prompts per pass."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise BadInputError("prompts must be a sequence of strings (not a single string)")
        prompts = list(prompts)
        out = np.empty((len(prompts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(prompts), self.batch_size):
                stop = min(start + self.batch_size, len(prompts))
                tokens = self.tokenizer(prompts[start:stop]).to(self.device)
                feats = self.model.encode_text(tokens).float()
                out[start:stop] = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"ClipEmbedder(name={self.name!r}, dim={self.dim}, device={str(self.device)!r})"
