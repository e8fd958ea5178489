"""The training loop of the VIS model: frozen backbone, AdamW, step schedule, checkpoints, DDP.

Run folder layout::

    RUN_DIR/train_config.json   the TrainConfig (resolved), model config, classes
    RUN_DIR/data.json           the training samples (TrainSet), fixed at the start
    RUN_DIR/frames/             JPEG frames of workspace videos
    RUN_DIR/metrics.jsonl       one JSON object per iteration: iter, loss, every term, lr, ...
    RUN_DIR/checkpoints/iter_NNNNNNN.pth   model + optimizer + scheduler + scaler + RNG state
    RUN_DIR/last_checkpoint     name of the newest complete checkpoint
    RUN_DIR/model_final.pth     {"model": state dict with MinVIS key names, "uvis": {...}}

Determinism: the batches come from :class:`~uvis.vis.train_data.IterationSampler` (a pure
function of seed and iteration) and the criterion's random points from a generator seeded
by (seed, iteration, rank), so a run resumed from the checkpoint of iteration k repeats
iterations k+1.. exactly as an uninterrupted run does (bit for bit on CPU with the same
thread count). Checkpoints are written atomically (temporary file, then rename) by rank 0.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from uvis.errors import BadInputError
from uvis.vis.criterion import SetCriterion
from uvis.vis.matcher import HungarianMatcher
from uvis.vis.points import RandomPoints, torch_rand
from uvis.vis.train_config import TrainConfig
from uvis.vis.train_data import Augment, FrameDataset, IterationSampler, TrainSet, collate

CHECKPOINTS = "checkpoints"
LAST = "last_checkpoint"
FINAL = "model_final.pth"
METRICS = "metrics.jsonl"


@dataclass
class Progress:
    """One finished iteration, for progress bars and the app."""

    iteration: int
    max_iter: int
    metrics: dict[str, float]
    eta_s: float


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    final_model: Path | None
    stopped: bool
    last_metrics: dict[str, float]


# --------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Start the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on CUDA,
    gloo on CPU. A no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, world, local)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        torch.distributed.barrier()


# --------------------------------------------------------------------------- model pieces
def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters in AdamW groups: norms (GroupNorm, LayerNorm, BatchNorm) get
    ``weight_decay_norm``, embeddings (``nn.Embedding``, ``level_embed``) ``weight_decay_embed``,
    the rest ``weight_decay`` (Mask2Former's ``build_optimizer``)."""
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.modules.batchnorm._BatchNorm)
    groups: dict[str, list[torch.nn.Parameter]] = {"decay": [], "norm": [], "embed": []}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(module, norm_types):
                groups["norm"].append(p)
            elif isinstance(module, torch.nn.Embedding) or "level_embed" in name:
                groups["embed"].append(p)
            else:
                groups["decay"].append(p)
    wd = {"decay": cfg.weight_decay, "norm": cfg.weight_decay_norm, "embed": cfg.weight_decay_embed}
    return [{"params": ps, "weight_decay": wd[k], "name": k} for k, ps in groups.items() if ps]


def _step_lambda(steps: Sequence[int], gamma: float) -> Callable[[int], float]:
    def factor(it: int) -> float:
        return gamma ** sum(1 for s in steps if it >= s)
    return factor


def build_criterion(cfg: TrainConfig, num_classes: int) -> SetCriterion:
    matcher = HungarianMatcher(cfg.cost_class, cfg.cost_mask, cfg.cost_dice, cfg.num_points)
    return SetCriterion(num_classes, matcher, weight_ce=cfg.weight_ce, weight_mask=cfg.weight_mask,
                        weight_dice=cfg.weight_dice, no_object_weight=cfg.no_object_weight,
                        deep_supervision=cfg.deep_supervision)


def batch_tensors(model: torch.nn.Module, samples: list[dict[str, Any]]
                  ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Images through the model's own ``preprocess`` (normalise, zero-pad to a common multiple
    of ``size_divisibility``: detectron2's ``ImageList``) -> (B, 3, Hp, Wp); targets per image:
    ``labels`` (N,) int64 and ``masks`` (N, Hp, Wp) float32 zero-padded (``prepare_targets``)."""
    images, sizes = model.preprocess([s["image"] for s in samples])
    hp, wp = images.shape[-2:]
    targets = []
    for s, (h, w) in zip(samples, sizes):
        m = torch.zeros((len(s["labels"]), hp, wp), device=images.device)
        m[:, :h, :w] = s["masks"].to(images.device).float()
        targets.append({"labels": s["labels"].to(images.device), "masks": m})
    return images, targets


# --------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    """Global RNG states in a form ``torch.load(weights_only=True)`` reads (tensors, ints, floats)."""
    import random

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]]}


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    marker = run_dir / LAST
    if not marker.is_file():
        return None
    path = run_dir / CHECKPOINTS / marker.read_text().strip()
    return path if path.is_file() else None


def save_checkpoint(run_dir: Path, state: dict[str, Any], iteration: int, keep: int) -> Path:
    """Write ``checkpoints/iter_<iteration>.pth`` atomically, point ``last_checkpoint`` at it,
    delete periodic checkpoints beyond the newest ``keep``."""
    from uvis.fsutil import atomic_path, atomic_write_text

    folder = run_dir / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    name = f"iter_{iteration:07d}.pth"
    with atomic_path(folder / name) as tmp:
        torch.save(state, tmp)
    atomic_write_text(run_dir / LAST, name + "\n")
    for old in sorted(folder.glob("iter_*.pth"))[:-keep]:
        old.unlink(missing_ok=True)
    return folder / name


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with MinVIS key names (unwrapping DDP), on CPU."""
    core = model.module if hasattr(model, "module") else model
    return {k: v.detach().cpu().clone() for k, v in core.state_dict().items()}


def list_checkpoints(run_dir: str | Path) -> list[dict[str, Any]]:
    """Checkpoints of a run: name, iteration, size in bytes, modification time (oldest first)."""
    folder = Path(run_dir) / CHECKPOINTS
    out = []
    for p in sorted(folder.glob("iter_*.pth")):
        st = p.stat()
        out.append({"name": p.name, "iteration": int(p.stem.split("_")[1]), "bytes": st.st_size,
                    "mtime": st.st_mtime})
    final = Path(run_dir) / FINAL
    if final.is_file():
        out.append({"name": FINAL, "iteration": None, "bytes": final.stat().st_size, "mtime": final.stat().st_mtime})
    return out


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The parsed lines of ``metrics.jsonl`` (a half-written last line is ignored)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _truncate_metrics(run_dir: Path, done: int) -> None:
    """Keep the metric lines of iterations <= ``done`` (a resumed run re-does the later ones)."""
    from uvis.fsutil import atomic_write_text

    keep = [json.dumps(m) for m in read_metrics(run_dir) if int(m.get("iter", 0)) <= done]
    atomic_write_text(run_dir / METRICS, "".join(line + "\n" for line in keep))


# --------------------------------------------------------------------------- the loop
class Trainer:
    """Trains a MinVIS model on a :class:`TrainSet`.

    Args:
        cfg: training settings.
        train_set: the samples (saved to ``run_dir/data.json`` on the first start).
        run_dir: the run folder (see the module docstring).
        device: ``cpu``, ``cuda``, ``cuda:N`` (with torchrun: the local rank's GPU).
        init: state dict to start from (MinVIS/Mask2Former key names); None: random init
            of everything but the backbone weights the model builder provides.
    """

    def __init__(self, cfg: TrainConfig, train_set: TrainSet, run_dir: str | Path, *, device: str = "cpu",
                 init: dict[str, torch.Tensor] | None = None, dist: Dist | None = None) -> None:
        from uvis.vis.config import MinVISConfig
        from uvis.vis.model import build_minvis

        self.cfg = cfg
        self.data = train_set
        self.run_dir = Path(run_dir)
        self.dist = dist or Dist()
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise BadInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
            if self.dist.world > 1:
                device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(torch.device(device))
        self.device = torch.device(device)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.model_cfg = MinVISConfig.from_dict({**cfg.model, "num_classes": len(train_set.classes)})
        torch.manual_seed(cfg.seed)
        model = build_minvis(self.model_cfg)
        if init is not None:
            load_init(model, init)
        self.criterion = build_criterion(cfg, len(train_set.classes))
        with torch.no_grad():  # the saved buffer states the no-object weight this model was trained with
            model.criterion.empty_weight.copy_(self.criterion.empty_weight())
        model.to(self.device).train()
        self.core = model
        self.model: torch.nn.Module = model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _step_lambda(cfg.steps, cfg.gamma))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.iteration = 0

    # ---------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {"model": model_state(self.model), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "iteration": self.iteration, "rng": _rng_state(), "train_config": self.cfg.to_dict(),
                "model_config": self.model_cfg.to_dict(), "classes": list(self.data.classes)}

    def load_state(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a bad checkpoint
            raise BadInputError(f"cannot read checkpoint {path}: {exc}; delete it and its name in "
                                f"{self.run_dir / LAST} to resume from the one before") from exc
        self.core.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        _set_rng_state(state["rng"])

    # ---------------------------------------------------------------- data
    def loader(self, start: int) -> torch.utils.data.DataLoader:
        cfg = self.cfg
        sampler = IterationSampler(len(self.data.samples), cfg.batch_size, cfg.seed, start, cfg.max_iter,
                                   self.dist.rank, self.dist.world)
        dataset = FrameDataset(self.data, Augment(cfg.min_sizes, cfg.max_size, cfg.flip_prob))
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                                           collate_fn=collate, worker_init_fn=_worker_init,
                                           pin_memory=self.device.type == "cuda",
                                           persistent_workers=False, prefetch_factor=4 if cfg.num_workers else None,
                                           # fresh worker processes: OpenCV's thread pool and OpenMP
                                           # deadlock in a child forked from a process that used them
                                           multiprocessing_context="spawn" if cfg.num_workers else None)

    # ---------------------------------------------------------------- one step
    def step(self, samples: list[dict[str, Any]], iteration: int) -> dict[str, float]:
        """Forward, losses, backward, clip, optimizer and scheduler step of one iteration."""
        images, targets = batch_tensors(self.core, samples)
        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        gen = torch.Generator(device=gen_device).manual_seed(
            int(np.random.default_rng([self.cfg.seed, iteration, self.dist.rank, 7]).integers(2 ** 62)))
        points = RandomPoints(torch_rand(gen), self.cfg.oversample_ratio, self.cfg.importance_sample_ratio)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            outputs = self.model(images)
        losses = self.criterion(outputs, targets, points)
        total = losses.total
        if not torch.isfinite(total):
            raise FloatingPointError(f"iteration {iteration + 1}: the loss is {float(total)}; lower train.lr or "
                                     "check the training masks")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.cfg.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        out = {"loss": float(total.detach())}
        out.update({k: float(v.detach()) for k, v in losses.weighted.items()})
        out["lr"] = lr
        return out

    # ---------------------------------------------------------------- the loop
    def fit(self, *, resume: bool = False, progress: Callable[[Progress], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> TrainResult:
        """Train up to ``cfg.max_iter`` (resuming from the last checkpoint when ``resume``)."""
        cfg, run = self.cfg, self.run_dir
        if resume:
            ckpt = last_checkpoint(run)
            if ckpt is not None:
                self.load_state(ckpt)
        if self.dist.main:
            run.mkdir(parents=True, exist_ok=True)
            _truncate_metrics(run, self.iteration)
            self.write_run_files()
        _barrier(self.dist)
        start = self.iteration
        tb = _tensorboard(run) if (cfg.tensorboard and self.dist.main) else None
        metrics_fh = open(run / METRICS, "a", encoding="utf-8") if self.dist.main else None
        last: dict[str, float] = {}
        stopped = False
        t_start = time.perf_counter()
        try:
            t_prev = time.perf_counter()
            for it, samples in zip(range(start, cfg.max_iter), self.loader(start)):
                t_data = time.perf_counter() - t_prev
                last = self.step(samples, it)
                self.iteration = it + 1
                now = time.perf_counter()
                last.update(s_per_iter=now - t_prev, data_s=t_data, memory_mb=_memory_mb(self.device),
                            instances=float(sum(len(s["labels"]) for s in samples)))
                t_prev = now
                if metrics_fh is not None:
                    metrics_fh.write(json.dumps({"iter": self.iteration, **last}) + "\n")
                    metrics_fh.flush()
                if tb is not None:
                    for k, v in last.items():
                        tb.add_scalar(k, v, self.iteration)
                done_now = self.iteration - start
                eta = (now - t_start) / done_now * (cfg.max_iter - self.iteration)
                if progress is not None and self.dist.main:
                    progress(Progress(self.iteration, cfg.max_iter, last, eta))
                stop = bool(should_stop and should_stop())
                if self.iteration % cfg.checkpoint_period == 0 or self.iteration == cfg.max_iter or stop:
                    self.checkpoint()
                if stop:
                    stopped = True
                    break
        finally:
            if metrics_fh is not None:
                metrics_fh.close()
            if tb is not None:
                tb.close()
        final = None
        if self.iteration >= cfg.max_iter:
            final = run / FINAL
            if self.dist.main:
                self.save_final(final)
            _barrier(self.dist)
        return TrainResult(run, self.iteration, final, stopped, last)

    def checkpoint(self) -> None:
        if self.dist.main:
            save_checkpoint(self.run_dir, self.state(), self.iteration, self.cfg.keep_checkpoints)
        _barrier(self.dist)

    def write_run_files(self) -> None:
        from uvis.fsutil import atomic_write_json

        if not (self.run_dir / "data.json").is_file():
            self.data.save(self.run_dir / "data.json")
        atomic_write_json(self.run_dir / "train_config.json",
                          {"train": self.cfg.to_dict(), "model": self.model_cfg.to_dict(),
                           "classes": list(self.data.classes), "class_agnostic": self.data.class_agnostic,
                           "source": self.data.source, "world_size": self.dist.world}, indent=1)

    def save_final(self, path: Path) -> None:
        from uvis.fsutil import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"model": model_state(self.model),
                        "uvis": {"model_config": self.model_cfg.to_dict(), "classes": list(self.data.classes),
                                 "iterations": self.iteration}}, tmp)


def load_init(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy matching tensors of ``state`` (MinVIS/Mask2Former key names) into ``model``; the
    class head and ``criterion.empty_weight`` are skipped when the class count differs
    (initialising from a checkpoint trained on another vocabulary). Returns the skipped keys.
    Every model key must be present; mis-shaped keys other than those are an error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise BadInputError(f"--init checkpoint lacks {len(missing)} key(s) of the model, e.g. {missing[:3]}; "
                            "it is not a MinVIS/Mask2Former checkpoint of this architecture")
    skipped, bad = [], []
    new = {}
    for k, v in own.items():
        src = state[k]
        if tuple(src.shape) == tuple(v.shape):
            new[k] = src
        elif k.endswith("class_embed.weight") or k.endswith("class_embed.bias") or k == "criterion.empty_weight":
            new[k] = v
            skipped.append(k)
        else:
            bad.append(f"{k} {tuple(src.shape)} vs {tuple(v.shape)}")
    if bad:
        raise BadInputError(f"--init checkpoint has {len(bad)} mis-shaped key(s): {'; '.join(bad[:3])}")
    model.load_state_dict(new, strict=True)
    return skipped


def _worker_init(_worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # (the DataLoader already runs workers with one torch thread)


def _memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        from uvis.errors import MissingDependencyError

        raise MissingDependencyError("train.tensorboard needs the tensorboard package: pip install tensorboard") \
            from exc
    return SummaryWriter(str(run_dir / "tensorboard"))
