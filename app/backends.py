"""Which proposer and embedder the app runs, and why (the status banner).

Preference (DESIGN §3): CutLER proposals when its weights resolve without the network
(a cached registry file or an existing local path), else the weight-free ``motion``
proposer; CLIP embeddings when the open_clip weights are cached (or a local
checkpoint path / random test weights are asked for), else the offline EfficientNet
embedder. Nothing here downloads or loads a model: it only looks for files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from uvis.config import EmbedderConfig, ProposerConfig
from uvis.errors import BadInputError

CUTLER_FETCH_CMD = "python -m uvis weights fetch {name}"
CLIP_FETCH_CMD = ("python -c \"from uvis.embedders.clip import resolve_clip_weights; "
                  "resolve_clip_weights('{model}', '{tag}')\"")


@dataclass(frozen=True)
class BackendChoice:
    """One stage's live backend.

    Attributes:
        stage: ``proposer`` or ``embedder``.
        live: the backend that runs (``cutler``, ``motion``, ``clip``, ``efficientnet``, ...).
        preferred: the backend the method wants (``cutler`` / ``clip``).
        reason: why ``live`` was chosen (one sentence).
        enable_cmd: the one shell command that makes ``preferred`` available, or "" when live.
    """

    stage: str
    live: str
    preferred: str
    reason: str
    enable_cmd: str = ""

    @property
    def degraded(self) -> bool:
        return self.live != self.preferred


def cutler_weights_available(name_or_path: str) -> tuple[bool, str]:
    """(available, explanation) for CutLER weights, looking only at local files."""
    from uvis import weights

    path = Path(name_or_path).expanduser()
    if path.is_file():
        return True, f"local weights file {path}"
    entry = weights.lookup(name_or_path)
    if entry is None:
        return False, f"'{name_or_path}' is neither a weights file nor a registry name"
    cached = weights.cached_path(entry)
    if cached.is_file():
        return True, f"cached weights {cached}"
    return False, f"CutLER weights {entry.filename} are not in {cached.parent}"


def clip_weights_available(model: str, pretrained: str) -> tuple[bool, str]:
    """(available, explanation) for open_clip weights, without touching the network."""
    from uvis.embedders import clip as clip_mod

    tag = (pretrained or "").strip()
    if tag.lower() in clip_mod.RANDOM_TAGS:
        return True, f"random-initialised {model} (test/demo weights, labels are meaningless)"
    path = Path(tag).expanduser()
    if path.is_file():
        return True, f"local checkpoint {path}"
    try:
        found = clip_mod.cached_clip_weights(model, tag)
    except BadInputError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - open_clip missing or broken: not available
        return False, f"open_clip cannot describe {model}/{tag}: {exc}"
    if found:
        return True, f"cached weights {found}"
    return False, f"open_clip weights {model}/{tag} are not cached in {clip_mod.default_cache_dir()}"


def choose_proposer(cfg: ProposerConfig, explicit: bool) -> tuple[ProposerConfig, BackendChoice]:
    """The proposer config to run and its banner entry.

    ``explicit``: the user named the backend (flag or config file): keep it as asked.
    """
    ok, why = cutler_weights_available(cfg.cutler_weights)
    cmd = "" if ok else CUTLER_FETCH_CMD.format(name=cfg.cutler_weights)
    if explicit:
        reason = f"chosen explicitly ({cfg.backend})"
        if cfg.backend in ("cutler", "detectron2"):
            reason += f"; {why}"
        return cfg, BackendChoice("proposer", cfg.backend, "cutler", reason,
                                  "" if cfg.backend in ("cutler", "detectron2") else cmd)
    if ok:
        return _with(cfg, backend="cutler"), BackendChoice("proposer", "cutler", "cutler", why)
    return _with(cfg, backend="motion"), BackendChoice(
        "proposer", "motion", "cutler", f"{why}; using weight-free motion proposals (OpenCV)", cmd)


def choose_embedder(cfg: EmbedderConfig, explicit: bool) -> tuple[EmbedderConfig, BackendChoice]:
    """The embedder config to run and its banner entry (see :func:`choose_proposer`)."""
    ok, why = clip_weights_available(cfg.clip_model, cfg.clip_pretrained)
    cmd = "" if ok else CLIP_FETCH_CMD.format(model=cfg.clip_model, tag=cfg.clip_pretrained)
    if explicit:
        reason = f"chosen explicitly ({cfg.backend})" + (f"; {why}" if cfg.backend == "clip" else "")
        return cfg, BackendChoice("embedder", cfg.backend, "clip", reason,
                                  "" if cfg.backend == "clip" else cmd)
    if ok:
        return _with(cfg, backend="clip"), BackendChoice("embedder", "clip", "clip", why)
    return _with(cfg, backend="efficientnet"), BackendChoice(
        "embedder", "efficientnet", "clip",
        f"{why}; using offline EfficientNet-Lite0 embeddings: labels come from your examples "
        "(relabel an instance and similar ones follow)", cmd)


def banner_markdown(choices: list[BackendChoice]) -> str:
    """The status banner: live backends, and for each missing one why and how to enable it."""
    parts = []
    for c in choices:
        icon = "✔" if not c.degraded else "⚠"
        line = f"{icon} **{c.stage}: {c.live}** — {c.reason}"
        if c.degraded and c.enable_cmd:
            line += f". To enable **{c.preferred}**: `{c.enable_cmd}` then restart."
        parts.append(line)
    return "  \n".join(parts)


def _with(cfg, **changes):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(cfg, **changes)
