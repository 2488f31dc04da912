"""The training loop of both papers: content-loss training, SalGAN's bootstrap + adversarial stages,
per-epoch validation, atomic checkpoints with exact resume, preemption, TensorBoard, metrics.jsonl.

    trainer = Trainer(cfg)            # run folder runs/<name>-<config hash>; resumes from latest.pt
    result = trainer.fit()            # {"status": "done"|"preempted"|"stopped", "val": {...}, ...}

Resume is exact: a checkpoint holds both networks, all optimisers, epoch, step, the position in the
epoch and every RNG state; the loader's order is a function of (seed, epoch), so the resumed run skips
the batches already done and continues with the same random state.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from salnet.config import Config, config_hash, git_sha, save_config, to_dict
from salnet.data.features import run_features
from salnet.data.loader import LoaderConfig, TrainLoader, ValLoader
from salnet.data.shards import lacking, read_manifest
from salnet.data.worker_signals import STOP_SIGNALS
from salnet.logs import get_logger
from salnet.metrics import METRICS
from salnet.train import steps
from salnet.train.build import (
    build_content_loss,
    build_discriminator,
    build_generator,
    build_optimizers,
    with_init_from_convention,
)
from salnet.train.checkpoint import BEST, CheckpointManager, rng_state, set_rng_state
from salnet.train.checks import check_config
from salnet.train.distributed import (
    DistEnv,
    all_reduce_sum,
    barrier,
    device_for,
    gather_objects,
    init_distributed,
    seed_everything,
)
from salnet.train.stages import adopt_stage, continued_epochs, stage_to_adopt
from salnet.train.tensorboard import Board, panel
from salnet.train.validate import fixation_pool, validate

PANEL_SIZE = 4
log = get_logger(__name__)


def versions() -> dict[str, str]:
    import numpy
    import scipy

    import salnet

    return {"salnet": salnet.__version__, "torch": str(torch.__version__), "numpy": numpy.__version__,
            "scipy": scipy.__version__}


class StopFlag:
    """Set by SIGUSR2/SIGTERM (preemption; NCCL owns SIGUSR1) or by code; read at step boundaries.

    The handlers it replaces are kept in ``previous`` so a job wrapper can hand over afterwards (submitit's
    requeue handler, called once the checkpoint is safely written)."""

    def __init__(self):
        self.reason: str | None = None  # the first reason
        self.seen: set[str] = set()  # every signal received (a preemption is SIGTERM then SIGUSR2)
        self.previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self.previous.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, lambda s, _f: self.set(signal.Signals(s).name))

    def hand_over(self) -> None:
        """Call the SIGUSR2 handler this flag replaced (submitit's: ``scontrol requeue``, then exit), once the
        checkpoint is written. SIGTERM and SIGUSR2 are ignored from here on: a repeated stop signal (Slurm signals
        every process of a step, and a preemption sends two) must not kill this process or its scontrol, which
        inherits the ignore, half-way through the requeue."""
        handler = self.previous.get(signal.SIGUSR2)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        if callable(handler):
            handler(signal.SIGUSR2, None)

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.seen.add(reason)


def initial_generator(path: str) -> dict:
    """The generator weights of ``train.init_from``: a run folder (its best.pt, else latest.pt) or a checkpoint
    file. A missing or foreign file is an error naming it."""
    from salnet.train.checkpoint import load_checkpoint, resolve_checkpoint

    p = Path(path)
    ckpt = resolve_checkpoint(p)[0] if p.is_dir() else p
    if not ckpt.is_file():
        raise FileNotFoundError(f"train.init_from={path}: no such run folder or checkpoint file")
    state = load_checkpoint(ckpt, map_location="cpu")
    if not isinstance(state, dict) or not isinstance(state.get("G"), dict):
        raise ValueError(f"train.init_from={path}: {ckpt} is not a salnet training checkpoint (no generator 'G')")
    return state["G"]


def mixed_precision(t, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last) of training steps on ``device`` under the train config ``t``: as asked on
    CUDA; on CPU only with ``t.cpu_bf16`` (otherwise CPU steps are exact float32 in the default layout)."""
    on = device.type == "cuda" or (device.type == "cpu" and t.cpu_bf16)
    return t.bf16 and on, t.channels_last and on


def run_dir_for(cfg: Config) -> Path:
    return Path(cfg.out_dir) / f"{cfg.name}-{config_hash(cfg)}"


def epoch_line(epoch: int, epochs: int, stage: str, train: dict[str, float], val: dict[str, float],
               img_per_s: float) -> str:
    """The log line of a finished epoch (0-based ``epoch``): its mean training losses (the ``loss/*`` keys), the
    validation metrics and the training throughput, e.g. ``epoch 3/120 (adversarial): train G 0.7012 D 0.6931
    content 0.2105 adversarial 0.6921; val auc_judd 0.8012 … cc 0.5123 …; 1840 img/s``."""
    losses = " ".join(f"{k.removeprefix('loss/')} {v:.4g}" for k, v in train.items() if k.startswith("loss/"))
    scores = " ".join(f"{k} {val[k]:.4f}" for k in METRICS if k in val)
    rate = f"{img_per_s:.0f}" if img_per_s >= 10 else f"{img_per_s:.2g}"  # a CPU run's 0.65, not 1
    return f"epoch {epoch + 1}/{epochs} ({stage}): train {losses}; val {scores}; {rate} img/s"


def progress_line(epoch: int, epochs: int, step: int, steps: int, logged: dict[str, float], left_s: float) -> str:
    """The log line every ``train.log_every`` steps (0-based ``epoch``, 1-based ``step`` of ``steps`` in the epoch),
    e.g. ``epoch 2/15 step 120/600: 43.1 img/s, G 0.7012 content 0.2105; 5m12s left in the epoch``."""
    losses = " ".join(f"{k.removeprefix('loss/')} {v:.4g}" for k, v in logged.items() if k.startswith("loss/"))
    rate = logged["throughput/img_per_s"]
    left = f"{int(left_s) // 60}m{int(left_s) % 60:02d}s" if left_s >= 60 else f"{left_s:.0f}s"
    return (f"epoch {epoch + 1}/{epochs} step {step}/{steps}: {rate:.3g} img/s, {losses}; "
            f"{left} left in the epoch")


class Trainer:
    """One training run of ``cfg`` in ``run_dir`` (default runs/<name>-<run id>): :meth:`fit` trains it to
    ``train.epochs`` (or the patience), resuming from the folder's latest checkpoint unless ``resume`` is False.
    A checkpoint of the same config with fewer epochs is continued (its final.json kept as
    final-<E>-epochs.json); any other config's checkpoint is an error."""

    def __init__(self, cfg: Config, run_dir: Path | None = None, resume: bool = True, env: DistEnv | None = None):
        self.cfg = cfg = check_config(with_init_from_convention(cfg))
        self.env = env or init_distributed()
        self.device = device_for(self.env)
        seed_everything(cfg.train.seed, self.env.rank)
        self.run_dir = Path(run_dir) if run_dir else run_dir_for(cfg)
        self.G = build_generator(cfg).to(self.device)
        self.D = build_discriminator(cfg)
        if self.D is not None:
            self.D = self.D.to(self.device)
        self.bf16, self.channels_last = mixed_precision(cfg.train, self.device)
        if self.channels_last:
            # Module.to takes memory_format at run time; torch's typed overloads leave it out
            self.G = self.G.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            torch.backends.cudnn.benchmark = self.device.type == "cuda"
        if cfg.train.init_from:
            self.G.load_state_dict(initial_generator(cfg.train.init_from))
        self.opts = build_optimizers(cfg, self.G, self.D)
        d = cfg.data
        lcfg = LoaderConfig(size=d.input_size, batch_size=d.batch_size, workers=d.workers, flip=d.flip,
                            seed=cfg.train.seed, max_bad_fraction=d.max_bad_fraction, passes=d.train_passes,
                            features=run_features(cfg, self.G))  # None, or a cache checked against G's encoder
        rw = {"rank": self.env.rank, "world_size": self.env.world_size}
        self.train_loader = TrainLoader(d.shards, d.train_split, lcfg, **rw)
        val_cfg = LoaderConfig(**{**lcfg.__dict__, "flip": False, "passes": 1})
        self.val_loader = ValLoader(d.shards, d.val_split, val_cfg, **rw)
        self.loss = build_content_loss(cfg, self._center_bias()).to(self.device)
        self.pool = fixation_pool(d.shards, d.val_split)  # sAUC negatives: other images' fixations
        self.g_train = DDP(self.G) if self.env.distributed else self.G
        self.d_train = DDP(self.D) if self.env.distributed and self.D is not None else self.D
        if cfg.train.compile:  # a compiled Module is a Module (OptimizedModule); torch.compile's stub says Callable
            self.g_train = torch.compile(self.g_train)  # type: ignore[assignment]
            self.d_train = torch.compile(self.d_train) if self.d_train is not None else None  # type: ignore[assignment]
        self.ckpt = CheckpointManager(self.run_dir, cfg.train.keep_last)
        self.epoch = self.batch_in_epoch = self.step = 0
        self.best: float | None = None
        self.best_epoch: int | None = None  # the epoch whose validation gave ``best``
        self.stop = StopFlag()
        self.resumed = False
        self.continued_from: int | None = None  # the epochs of the shorter run this one continues
        if resume:
            self._resume()

    # ------------------------------------------------------------------ state

    def _center_bias(self):
        """Mean training map at the output size, for the centre-bias regulariser (only when the spec uses it)."""
        spec = self.cfg.train.loss
        if not (isinstance(spec, dict) and "center_bias" in spec):
            return None
        from salnet.losses import center_bias_map

        probe = self.G(torch.zeros(1, 3, *self.cfg.data.input_size, device=self.device)).logits
        maps = (m for b in ValLoader(self.cfg.data.shards, self.cfg.data.train_split,
                                     LoaderConfig(size=self.cfg.data.input_size, batch_size=16, workers=0,
                                                  flip=False), rank=0, world_size=1)
                for m in b["map"])
        return center_bias_map(maps, tuple(probe.shape[-2:])).to(self.device)

    def state_dict(self) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict() if self.D is not None else {},
                "opts": {k: o.state_dict() for k, o in self.opts.items()},
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "best": self.best, "best_epoch": self.best_epoch, "rng": rng_state(), "run_id": config_hash(self.cfg)}

    def _resume(self) -> None:
        state = self.ckpt.load(map_location=self.device)
        if state is None and (stage_dir := stage_to_adopt(self.cfg)) is not None:
            if self.env.is_main:  # the shared first stage becomes this run's own first epochs
                adopt_stage(stage_dir, self.run_dir)
                log.info(f"{self.run_dir}: starting from the first stage {stage_dir} "
                         f"({self.cfg.train.bootstrap_epochs} epochs)")
            barrier()
            state = self.ckpt.load(map_location=self.device)
        if state is None:
            return
        if state.get("run_id") != config_hash(self.cfg):
            self.continued_from = continued_epochs(self.cfg, state.get("run_id"))
            if self.continued_from is None:
                raise ValueError(f"{self.ckpt.latest()}: checkpoint of run {state.get('run_id')}, this config is "
                                 f"{config_hash(self.cfg)} (only train.epochs may grow); use another run folder or "
                                 "--no-resume")
            log.info(f"{self.run_dir}: continuing run {state.get('run_id')} ({self.continued_from} epochs) to "
                     f"{self.cfg.train.epochs} epochs as run {config_hash(self.cfg)}")
        self.G.load_state_dict(state["G"])
        if self.D is not None:
            self.D.load_state_dict(state["D"])
        for k, o in self.opts.items():
            o.load_state_dict(state["opts"][k])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.best, self.best_epoch = state["best"], state.get("best_epoch")
        ranks = state.get("rng_ranks") or []  # every rank's RNG (dropout differs per rank); rank 0's otherwise
        self._rng_after_skip = ranks[self.env.rank] if len(ranks) == self.env.world_size else state["rng"]
        self.resumed = True

    def save(self, is_best: bool = False) -> None:
        rngs = gather_objects(rng_state())
        if self.env.is_main:
            self.ckpt.save({**self.state_dict(), "rng_ranks": rngs}, self.step, is_best=is_best)
        barrier()

    # ------------------------------------------------------------------ training

    def stage(self, epoch: int) -> str:
        t = self.cfg.train
        if t.procedure == "content":
            return "content"
        return "bootstrap" if epoch < t.bootstrap_epochs or not t.adversarial else "adversarial"

    def train_step(self, batch: dict, stage: str) -> dict:
        batch = {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        if self.channels_last:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
        t = self.cfg.train
        if stage == "content":
            return steps.content_step(self.g_train, self.opts["g"], self.loss, batch, self.device, self.bf16)
        if stage == "bootstrap":
            return steps.content_step(self.g_train, self.opts["boot"], self.loss, batch, self.device, self.bf16)
        # the released SalGAN code alternates batch by batch; its counter n_updates starts at 1 and
        # `n_updates % 2 == 0` trains G, so the first adversarial batch trains D. D's forward in the G step uses the
        # bare module: D is not updated there, so DDP must not wait for its gradients.
        if self.D is None or self.d_train is None:
            raise RuntimeError(f"stage {stage!r} needs the discriminator (train.procedure=salgan)")
        adversarial_step = self.step - t.bootstrap_epochs * len(self.train_loader)
        if adversarial_step % 2 == 1:
            return steps.generator_step(self.g_train, self.D, self.opts["g"], self.loss, batch, t.alpha,
                                        self.device, self.bf16)
        return steps.discriminator_step(self.G, self.d_train, self.opts["d"], batch, self.device, self.bf16)

    def fit(self) -> dict:
        t = self.cfg.train
        self.stop.install()
        board = Board(self.run_dir / "tb", enabled=self.env.is_main)
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            shorter = self.run_dir / "final.json"
            if self.continued_from is not None and shorter.is_file():  # kept: the shorter run's result
                shorter.replace(self.run_dir / f"final-{self.continued_from}-epochs.json")
            save_config(self.cfg, self.run_dir / "config.yaml", extra={
                "git_sha": git_sha(), "seed": t.seed, "versions": versions(), "world_size": self.env.world_size})
        status = "done"
        log.info(f"training {self.run_dir}: epoch {self.epoch + 1} of {t.epochs}, step {self.step}, "
                 f"{self.env.world_size} process(es) on {self.device.type}")
        if self.env.is_main:  # once per run, not per epoch: what the metrics cannot score on this data
            d = self.cfg.data
            for line in lacking(read_manifest(d.shards), [d.train_split, d.val_split]):
                log.warning(f"{d.shards}: {line}")
        try:
            while self.epoch < t.epochs and not self.converged():
                status = self._epoch(board)
                if status != "done":
                    return {"status": status, "epoch": self.epoch, "step": self.step, "run_dir": str(self.run_dir)}
            best = self.ckpt.load(BEST, map_location=self.device)  # the final numbers are the best model's
            if best is not None:
                self.G.load_state_dict(best["G"])
            val_epoch = best["epoch"] if best else self.epoch  # 1-based: the epoch the best checkpoint ended
            final, _ = validate(self.G, self.val_loader, self.device, shuffle_pool=self.pool, seed=t.seed,
                                postprocess=self.cfg.model.postprocess)
            if self.env.is_main:
                (self.run_dir / "final.json").write_text(json.dumps(
                    {"val": final, "val_epoch": val_epoch, "epochs": self.epoch, "step": self.step,
                     "checkpoint_step": best["step"] if best else self.step, "best_metric": t.best_metric}, indent=2))
                board.hparams({**to_dict(self.cfg.train), "arch": self.cfg.model.arch, "width": self.cfg.model.width},
                              {k: v for k, v in final.items() if k in METRICS})
            return {"status": status, "val": final, "val_epoch": val_epoch, "epoch": self.epoch, "step": self.step,
                    "run_dir": str(self.run_dir)}
        finally:
            board.close()

    def _epoch(self, board: Board) -> str:
        t = self.cfg.train
        stage = self.stage(self.epoch)
        self.train_loader.set_epoch(self.epoch)
        it = iter(self.train_loader)
        for _ in range(self.batch_in_epoch):  # resume mid-epoch: the order is a function of (seed, epoch)
            next(it)
        if self.resumed:
            set_rng_state(self._rng_after_skip)
            self.resumed = False
        sums: dict[str, torch.Tensor] = {}  # epoch sums per key (SalGAN's D and G steps alternate)
        seen: dict[str, int] = {}
        window: dict[str, list] = {}  # since the last log
        t0, imgs, window_steps = time.perf_counter(), 0, 0
        epoch_t0, epoch_imgs = t0, 0  # the epoch line's img/s: training steps only
        for batch in it:
            out = self.train_step(batch, stage)
            self.batch_in_epoch += 1
            self.step += 1
            imgs += len(batch["id"]) * self.env.world_size
            window_steps += 1
            epoch_imgs += len(batch["id"]) * self.env.world_size
            for k, v in out.items():
                sums[k] = sums.get(k, 0) + v
                seen[k] = seen.get(k, 0) + 1
                window.setdefault(k, []).append(v)
            if self.step % t.log_every == 0:
                dt = time.perf_counter() - t0
                # the only host synchronisation: once every log_every steps
                logged = {k: torch.stack(v).mean().item() for k, v in window.items()}
                self._check_finite(logged)
                logged["throughput/img_per_s"] = imgs / dt
                for k, o in self.opts.items():
                    logged[f"lr/{k}"] = o.param_groups[0]["lr"]
                if self.device.type == "cuda":
                    logged["gpu/max_mem_GiB"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                board.scalars(logged, self.step)
                if self.env.is_main:
                    n = len(self.train_loader)
                    log.info(progress_line(self.epoch, t.epochs, self.batch_in_epoch, n, logged,
                                           (n - self.batch_in_epoch) * dt / window_steps))
                window, t0, imgs, window_steps = {}, time.perf_counter(), 0, 0
            if self._should_stop(log_step=self.step % t.log_every == 0):
                self.save()
                return "preempted"
            if t.max_steps is not None and self.step >= t.max_steps:
                self.save()
                return "stopped"
        train_means = {k: (v / seen[k]).item() for k, v in sums.items()}
        img_per_s = epoch_imgs / max(time.perf_counter() - epoch_t0, 1e-9)
        self._check_finite(train_means)
        val, kept = validate(self.G, self.val_loader, self.device, shuffle_pool=self.pool,
                             max_images=self.cfg.data.val_subset, seed=t.seed, keep=PANEL_SIZE,
                             postprocess=self.cfg.model.postprocess)
        board.scalars({f"val/{k}": v for k, v in val.items() if k in METRICS}, self.step)
        board.scalars({f"epoch/{k}": v for k, v in train_means.items()}, self.step)
        if kept:
            board.image("val/panel (image | prediction | ground truth)", panel(kept), self.step)
        is_best = self._is_best(val)
        log.info(epoch_line(self.epoch, t.epochs, stage, train_means, val, img_per_s))
        if self.env.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"epoch": self.epoch + 1, "step": self.step, "stage": stage, "train": train_means,
                                    "val": val, "time": time.time()}) + "\n")
        self.epoch += 1
        self.batch_in_epoch = 0
        self.save(is_best=is_best)
        board.flush()
        return "done"

    def converged(self) -> bool:
        """True once ``train.patience`` epochs have passed without a better validation ``best_metric`` (the loss
        study's "trained until the validation converges"); never without a patience."""
        p = self.cfg.train.patience
        return p is not None and self.best_epoch is not None and self.epoch - 1 - self.best_epoch >= p

    def _check_finite(self, values: dict[str, float]) -> None:
        """A diverged run fails loudly (and a sweep counts it as a failed trial) instead of training on NaN."""
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise FloatingPointError(f"non-finite training values at step {self.step} (epoch {self.epoch}): {bad}; "
                                     "lower the learning rate (train.lr / train.bootstrap_lr) or check the data")

    def _should_stop(self, log_step: bool) -> bool:
        """A preemption signal seen by any rank stops all ranks at the same step: with DDP the ranks agree
        by an all-reduce on logging steps only (a host sync), so the stop may wait up to log_every steps."""
        if not self.env.distributed:
            return self.stop.reason is not None
        if not log_step:
            return False
        flag = torch.tensor([1.0 if self.stop.reason else 0.0], device=self.device)
        if all_reduce_sum(flag).item() > 0:
            self.stop.reason = self.stop.reason or "peer"
            return True
        return False

    def _is_best(self, val: dict) -> bool:
        name = self.cfg.train.best_metric
        if name not in METRICS:
            raise ValueError(f"train.best_metric {name!r} is not a metric; choose one of {', '.join(METRICS)}")
        if name not in val:
            return False
        v = val[name] if METRICS[name].higher_is_better else -val[name]
        if self.best is None or v > self.best:
            self.best, self.best_epoch = v, self.epoch
            return True
        return False
