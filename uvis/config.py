"""The one home of every default: a validated dataclass tree, saved as YAML or JSON.

Defaults follow ``DESIGN.md`` §1. ``Config.validate()`` raises :class:`ConfigError`
with a message naming the field (dotted path), the value and the rule. Configs are
stored with every result (workspace database and exports) so each export says how it
was made.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from uvis.errors import ConfigError

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
VOCABULARY_DIR = ASSETS_DIR / "vocabularies"

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of {}",
    "a photo of {} doing",
    "a photo of {} moving",
    "a photo of {} with",
    "a photo of {} on",
    "a photo of {} in",
    "a photo of {} at",
)


CLASS_AGNOSTIC_NAME = "object"
"""The one class of class-agnostic decisions (``labeler.label_source = none``)."""

LABEL_SOURCES = ("auto", "prompts", "examples", "none")


def vocabulary_presets() -> dict[str, list[str]]:
    """Preset vocabularies from ``assets/vocabularies/*.json``: name -> class names (ids 1..N)."""
    out: dict[str, list[str]] = {}
    for path in sorted(VOCABULARY_DIR.glob("*.json")):
        out[path.stem] = list(json.loads(path.read_text())["classes"])
    return out


def load_preset(name: str) -> list[str]:
    """Class names of a preset (``ytvis2019``, ``ytvis2021``, ``ovis``)."""
    presets = vocabulary_presets()
    if name not in presets:
        raise ConfigError(f"unknown vocabulary preset '{name}'; known presets: {', '.join(presets)}")
    return presets[name]


def display_name(class_name: str) -> str:
    """How a class is shown to CLIP: underscores become spaces (``earless_seal`` -> ``earless seal``)."""
    return class_name.replace("_", " ").strip()


@dataclass
class VideoConfig:
    """How frames are read. ``stride`` >= 1 keeps every stride-th frame; ``max_frames``
    caps the processed frame count (None: all); ``max_side`` downscales frames so the
    longer side is at most this many pixels (None: original size)."""

    stride: int = 1
    max_frames: int | None = None
    max_side: int | None = None


@dataclass
class ProposerConfig:
    """Class-agnostic proposals. ``backend``: motion | file | cutler | detectron2.

    ``cutler_weights``: registry name or local path; ``min_size``/``max_size``: the
    ResizeShortestEdge of CutLER inference (800/1333; a smaller short side is faster);
    ``file``: path of a COCO or YouTube-VIS results JSON for the ``file`` backend;
    ``file_index``: the dataset JSON (COCO instances / YouTube-VIS) that maps the results'
    image or video ids to videos and frames, when the results file alone cannot;
    ``motion_mode``: auto | background | flow (motion backend; auto picks by camera motion).
    """

    backend: str = "motion"
    cutler_weights: str = "cutler_cascade_final"
    min_size: int = 800
    max_size: int = 1333
    nms_threshold: float = 0.5
    max_per_frame: int = 100
    file: str | None = None
    file_index: str | None = None
    motion_mode: str = "auto"
    device: str = "cpu"


@dataclass
class EmbedderConfig:
    """Crop embeddings. ``backend``: clip | efficientnet.

    ``clip_model``/``clip_pretrained``: an open_clip model name and pretrained tag, or a
    local checkpoint path as ``clip_pretrained``. ``crop_padding``: context added around
    each box as a fraction of its width/height (0.1 = 10 %), clipped to the frame.
    ``grey_background``: pixels outside the mask are set to grey (128) in the crop.
    """

    backend: str = "clip"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "openai"
    crop_padding: float = 0.1
    grey_background: bool = False
    batch_size: int = 64
    device: str = "cpu"


@dataclass
class LabelerConfig:
    """Text–instance matching (DESIGN §1.3).

    ``vocabulary``: class names (unique, non-empty); ``templates``: prompt templates with
    one ``{}`` for the class; ``prompt_pooling``: ``max`` (closest single prompt, the
    paper) or ``mean`` (averaged template embeddings, CLIP's ensembling); ``top_k``:
    class scores kept per instance for display.

    ``label_source`` (DESIGN §1.3): ``prompts`` (CLIP text matching; needs an embedder
    with a text encoder), ``examples`` (label by example: the class of the most similar
    accepted/relabelled instance, score = that cosine), ``none`` (class-agnostic: every
    instance is class ``object``, the CLIP-score filter is off, PMF runs over the one
    class) or ``auto`` (the default): ``prompts`` when the embedder has a text encoder,
    else ``none`` until the first example exists, then ``examples``
    (:func:`resolve_label_source`).
    """

    vocabulary: list[str] = field(default_factory=lambda: load_preset("ytvis2019"))
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    prompt_pooling: str = "max"
    top_k: int = 5
    label_source: str = "auto"


def resolve_label_source(setting: str, has_text: bool, has_examples: bool) -> str:
    """The label source in effect: ``setting`` unless ``auto`` (see :class:`LabelerConfig`).

    Raises:
        ConfigError: ``prompts`` asked of an embedder without a text encoder.
    """
    if setting == "auto":
        return "prompts" if has_text else ("examples" if has_examples else "none")
    if setting == "prompts" and not has_text:
        raise ConfigError("labeler.label_source is 'prompts' but this project's embedder has no text encoder; "
                          "use 'examples', 'none' or 'auto'")
    return setting


@dataclass
class FilterConfig:
    """Score filter and Prototype Memory Filtering (DESIGN §1.4–1.5).

    Thresholds are in [0, 1]. ``clip_threshold_per_class`` overrides ``clip_threshold``
    for named classes. PMF: ``pmf_k`` prototypes per class (K-means, cosine),
    ``pmf_min_members`` below which a class is not filtered, ``pmf_max_samples`` caps
    the members K-means sees per class (a seeded uniform sample, 64 per prototype at
    K = 8, keeps re-deciding interactive; user exemplars always included; every member
    still counts towards ``pmf_min_members`` and every instance is filtered),
    ``pmf_iterations`` the maximum K-means iterations (stops early when assignments are
    stable).
    """

    objectness_threshold: float = 0.7
    clip_threshold: float = 0.7
    clip_threshold_per_class: dict[str, float] = field(default_factory=dict)
    pmf_enabled: bool = True
    pmf_threshold: float = 0.7
    pmf_k: int = 8
    pmf_min_members: int = 3
    pmf_max_samples: int = 512
    pmf_iterations: int = 10
    seed: int = 0


@dataclass
class TrackerConfig:
    """Tracking memory (DESIGN §1.6): cost = w·(1 − cos(Q*, q)) + (1 − w)·(1 − maskIoU),
    Q* = λ·q_last + (1 − λ)·mean; matches with cost > ``max_cost`` refused; a track
    unseen for more than ``max_gap`` frames closes."""

    embedding_weight: float = 0.5
    memory_lambda: float = 0.7
    max_cost: float = 0.6
    max_gap: int = 10


@dataclass
class Config:
    """The whole configuration of a run: every stage's settings."""

    video: VideoConfig = field(default_factory=VideoConfig)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    labeler: LabelerConfig = field(default_factory=LabelerConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)

    # ---------------------------------------------------------------- validation
    def validate(self) -> "Config":
        """Check every rule; raise :class:`ConfigError` naming field, value and rule. Returns self."""
        errors = list(_errors(self))
        if errors:
            raise ConfigError("invalid configuration: " + "; ".join(errors))
        return self

    # ---------------------------------------------------------------- io
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Build from a (possibly partial) nested dict; unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        return _build(cls, data, "").validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write as YAML (``.yaml``/``.yml``) or JSON (any other suffix), atomically."""
        path = Path(path)
        text = self.to_yaml() if path.suffix in {".yaml", ".yml"} else self.to_json()
        from uvis.fsutil import atomic_write_text

        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """Read a YAML or JSON config file (partial files fill in defaults)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_text()
            data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot parse config file {path}: {exc}") from exc
        return cls.from_dict(data or {})

    def replace(self, **sections: Any) -> "Config":
        """A copy with whole sections or ``section__field=value`` entries replaced."""
        data = self.to_dict()
        for key, value in sections.items():
            if "__" in key:
                sec, name = key.split("__", 1)
                data[sec][name] = value
            else:
                data[key] = asdict(value) if dataclasses.is_dataclass(value) else value
        return Config.from_dict(data)

    def prompts(self) -> list[str]:
        """All prompts, class-major: prompt index = class_index * len(templates) + template_index.

        Memoised on this config for its current vocabulary and templates: a decision pass
        asks once per video, and formatting 40 x 7 prompts thousands of times per slider
        move was seconds at dataset scale (bench/bench_scale.py)."""
        key = (tuple(self.labeler.vocabulary), tuple(self.labeler.templates))
        memo = self.__dict__.get("_prompts_memo")
        if memo is None or memo[0] != key:
            names = [display_name(c) for c in key[0]]
            memo = (key, [t.format(n) for n in names for t in key[1]])
            self.__dict__["_prompts_memo"] = memo
        return list(memo[1])


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known keys of {prefix.rstrip('.') or 'config'}: {', '.join(known)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = cls.__dataclass_fields__[name].default_factory  # type: ignore[attr-defined]
        sub = default() if callable(default) else None
        if dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{name} must be a mapping, got {value!r}")
            kwargs[name] = _build(type(sub), value, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _unit(path: str, value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [f"{path} must be a number in [0, 1], got {value!r}"]
    if not 0.0 <= float(value) <= 1.0:
        return [f"{path} must be in [0, 1], got {value}"]
    return []


def _int(path: str, value: Any, lo: int, hi: int | None = None, optional: bool = False) -> list[str]:
    if value is None and optional:
        return []
    if isinstance(value, bool) or not isinstance(value, int):
        return [f"{path} must be an integer, got {value!r}"]
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        return [f"{path} must be {rng}, got {value}"]
    return []


def _choice(path: str, value: Any, choices: tuple[str, ...]) -> list[str]:
    return [] if value in choices else [f"{path} must be one of {', '.join(choices)}; got {value!r}"]



def template_problem(template: object) -> str | None:
    """Why ``template`` is not a prompt template, or None.

    A template is text with exactly one ``{}`` (where the class name goes) and
    otherwise literal text: no named or numbered fields (``{x}``, ``{0}``), no format
    specs, no single ``{`` or ``}`` (write ``{{`` / ``}}`` for literal braces), so
    ``template.format(name)`` can never fail.
    """
    import string

    if not isinstance(template, str):
        return f"must be text, not {type(template).__name__}"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        return f"is not a valid template ({exc}); write '{{{{' and '}}}}' for literal braces"
    if len(fields) != 1 or fields[0] != ("", "", None):
        others = [("{" + n + (f"!{c}" if c else "") + (f":{sp}" if sp else "") + "}") for n, sp, c in fields
                  if (n, sp, c) != ("", "", None)]
        if others:
            return (f"may contain only '{{}}' (the class name) and literal text, not {', '.join(others)}; "
                    "write '{{' and '}}' for literal braces")
        return f"must contain '{{}}' exactly once (the class name), found it {len(fields)} times"
    return None


def _errors(cfg: Config) -> list[str]:
    e: list[str] = []
    v, p, em, lab, f, t = cfg.video, cfg.proposer, cfg.embedder, cfg.labeler, cfg.filters, cfg.tracker
    e += _int("video.stride", v.stride, 1, 10_000)
    e += _int("video.max_frames", v.max_frames, 1, optional=True)
    e += _int("video.max_side", v.max_side, 16, 16_384, optional=True)
    e += _choice("proposer.backend", p.backend, ("motion", "file", "cutler", "detectron2"))
    e += _choice("proposer.motion_mode", p.motion_mode, ("auto", "background", "flow"))
    e += _int("proposer.min_size", p.min_size, 32, 4096)
    e += _int("proposer.max_size", p.max_size, 32, 8192)
    e += _unit("proposer.nms_threshold", p.nms_threshold)
    e += _int("proposer.max_per_frame", p.max_per_frame, 1, 1000)
    if p.backend == "file" and not p.file:
        e.append("proposer.file must name a COCO or YouTube-VIS results JSON when proposer.backend is 'file'")
    e += _choice("embedder.backend", em.backend, ("clip", "efficientnet"))
    if not isinstance(em.crop_padding, (int, float)) or not 0.0 <= em.crop_padding <= 2.0:
        e.append(f"embedder.crop_padding must be in [0, 2] (fraction of the box size), got {em.crop_padding!r}")
    e += _int("embedder.batch_size", em.batch_size, 1, 4096)
    if not isinstance(lab.vocabulary, list) or not lab.vocabulary:
        e.append("labeler.vocabulary must be a non-empty list of class names")
    else:
        names = [c.strip() if isinstance(c, str) else c for c in lab.vocabulary]
        bad = [c for c in names if not isinstance(c, str) or not c]
        if bad:
            e.append(f"labeler.vocabulary has empty or non-text class names: {bad!r}")
        seen: set[str] = set()
        dups = sorted({c for c in names if isinstance(c, str) and (c in seen or seen.add(c))})
        if dups:
            e.append(f"labeler.vocabulary has duplicate class names: {', '.join(dups)}")
    if not isinstance(lab.templates, list) or not lab.templates:
        e.append("labeler.templates must be a non-empty list of templates containing '{}'")
    else:
        for i, tpl in enumerate(lab.templates):
            problem = template_problem(tpl)
            if problem:
                e.append(f"labeler.templates[{i}] {tpl!r}: {problem}")
        texts = [t for t in lab.templates if isinstance(t, str)]
        if len(set(texts)) != len(texts):
            e.append("labeler.templates has duplicate templates")
    e += _choice("labeler.prompt_pooling", lab.prompt_pooling, ("max", "mean"))
    e += _int("labeler.top_k", lab.top_k, 1, 1000)
    e += _choice("labeler.label_source", lab.label_source, LABEL_SOURCES)
    e += _unit("filters.objectness_threshold", f.objectness_threshold)
    e += _unit("filters.clip_threshold", f.clip_threshold)
    e += _unit("filters.pmf_threshold", f.pmf_threshold)
    if not isinstance(f.clip_threshold_per_class, dict):
        e.append("filters.clip_threshold_per_class must be a mapping class -> threshold")
    else:
        vocab = {c for c in lab.vocabulary if isinstance(c, str)} if isinstance(lab.vocabulary, list) else set()
        for cls_name, thr in f.clip_threshold_per_class.items():
            if cls_name not in vocab:
                e.append(f"filters.clip_threshold_per_class names '{cls_name}', which is not in labeler.vocabulary")
            e += _unit(f"filters.clip_threshold_per_class[{cls_name}]", thr)
    e += _int("filters.pmf_k", f.pmf_k, 1, 256)
    e += _int("filters.pmf_min_members", f.pmf_min_members, 1)
    e += _int("filters.pmf_max_samples", f.pmf_max_samples, 1)
    e += _int("filters.pmf_iterations", f.pmf_iterations, 1, 1000)
    e += _unit("tracker.embedding_weight", t.embedding_weight)
    e += _unit("tracker.memory_lambda", t.memory_lambda)
    if isinstance(t.max_cost, bool) or not isinstance(t.max_cost, (int, float)) or not 0.0 <= t.max_cost <= 2.0:
        e.append(f"tracker.max_cost must be in [0, 2] (costs lie in [0, 2]), got {t.max_cost!r}")
    e += _int("tracker.max_gap", t.max_gap, 0, 100_000)
    return e
