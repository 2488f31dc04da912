"""TensorBoard output of a run (rank 0 only): scalars, heat-map overlay panels, hparams."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

HPARAMS_SUFFIX = ".hparams"  # the events file that holds a run's hparams row, rewritten when the run continues

# a short "jet"-like colour ramp: dark blue → cyan → yellow → red
_RAMP = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.5, 1.0], [0.5, 1.0, 0.5], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def heatmap(m: Tensor) -> Tensor:
    """(1,H,W) or (H,W) map → (3,H,W) RGB in [0,1] (min–max normalised, colour ramp)."""
    m = m.reshape(m.shape[-2:]).float()
    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)
    pos = m * (len(_RAMP) - 1)
    lo = pos.floor().long().clamp(max=len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    rgb = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    return rgb.permute(2, 0, 1)


def overlay(image: Tensor, m: Tensor, alpha: float = 0.5) -> Tensor:
    """Heat map of ``m`` blended over ``image`` (3,H,W) [0,1]; the map is resized to the image."""
    if m.shape[-2:] != image.shape[-2:]:
        m = F.interpolate(m.reshape(1, 1, *m.shape[-2:]).float(), size=image.shape[-2:], mode="bilinear",
                          align_corners=False)[0]
    return (1 - alpha) * image.float() + alpha * heatmap(m)


def panel(samples: list[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
    """Rows of [image | prediction overlay | ground-truth overlay] → one (3, rows·H, 3·W) image."""
    rows = [torch.cat([img.float(), overlay(img, pred), overlay(img, gt)], dim=-1) for img, pred, gt in samples]
    return torch.cat(rows, dim=-2).clamp(0, 1)


class Board:
    """A SummaryWriter on rank 0, a no-op elsewhere."""

    def __init__(self, log_dir: Path, enabled: bool = True):
        self.writer = None
        self.log_dir = Path(log_dir)
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer:
            for k, v in values.items():
                self.writer.add_scalar(k, float(v), step)

    def image(self, tag: str, img: Tensor, step: int) -> None:
        if self.writer:
            self.writer.add_image(tag, img, step, dataformats="CHW")

    def hparams(self, hparams: dict, metrics: dict[str, float]) -> None:
        """The run's hparams row: ``hparams`` (non-scalars as text) and ``metrics`` as ``hparam/<name>``, in an
        events file of its own (suffix ``.hparams``) that replaces the one an earlier, shorter fit of the same run
        wrote: TensorBoard keeps the first hparams record of a run, so a continued run would show stale ones."""
        if not self.writer:
            return
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        clean = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in hparams.items()}
        scores = {f"hparam/{k}": float(v) for k, v in metrics.items()}
        earlier = list(self.log_dir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"))
        with SummaryWriter(str(self.log_dir), filename_suffix=HPARAMS_SUFFIX) as w:
            for summary in hparams_summaries(clean, scores):
                w.file_writer.add_summary(summary)
            for k, v in scores.items():
                w.add_scalar(k, v)
        for old in earlier:  # only once the new row is written: an interruption leaves two rows, never none
            old.unlink()

    def flush(self) -> None:
        if self.writer:
            self.writer.flush()

    def close(self) -> None:
        if self.writer:
            self.writer.close()
