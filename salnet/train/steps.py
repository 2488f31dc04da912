"""One optimisation step of each procedure. Steps return detached tensors (no host synchronisation);
the loop reads them only when it logs."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from salnet.data.features import model_input
from salnet.imresize import imresize
from salnet.losses import discriminator_loss, generator_adversarial_loss


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` (CUDA or CPU) when ``bf16``; a no-op context otherwise. The loop asks for it on
    CPU only with ``train.cpu_bf16`` (:func:`salnet.train.loop.mixed_precision`)."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def targets_at(batch: dict, size: tuple[int, int]) -> dict[str, Tensor]:
    """The loss targets at the network's output ``size``: map (area resize), fixations (max-pooled, so a
    fixation anywhere in a cell marks the cell), image (area resize). Identity when sizes match. Always float32,
    computed with autocast off: the area resize is a matmul, which a bf16 autocast region would round to bf16."""
    out = {"map": batch["map"].float(), "fixations": batch["fixations"].float(), "image": batch["image"].float()}
    if tuple(batch["map"].shape[-2:]) != tuple(size):
        with torch.autocast(batch["map"].device.type, enabled=False):
            out["map"] = imresize(out["map"], size, "area")
            out["image"] = imresize(out["image"], size, "area")
            out["fixations"] = F.adaptive_max_pool2d(out["fixations"], size)
    return out


def content_step(G: nn.Module, opt: torch.optim.Optimizer, loss_fn: nn.Module, batch: dict,
                 device: torch.device, bf16: bool) -> dict[str, Tensor]:
    """One step on the content loss; returns {"loss/content": total, "content/<term>": raw terms}."""
    with autocast(device, bf16):
        out = G(model_input(batch))  # the images, or a feature cache's taps (the loss-study head alone)
        total, terms = loss_fn(out.logits, targets_at(batch, out.logits.shape[-2:]), out.output)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return {"loss/content": total.detach(), **{f"content/{k}": v for k, v in terms.items()}}


def discriminator_step(G: nn.Module, D: nn.Module, opt_d: torch.optim.Optimizer, batch: dict,
                       device: torch.device, bf16: bool) -> dict[str, Tensor]:
    """D update on the mean BCE over the batch [D(I, S) → 1; D(I, Ŝ) → 0] (released), Ŝ from the current G (no G
    gradient)."""
    with torch.no_grad(), autocast(device, bf16):
        fake = G(batch["image"]).prob
    with autocast(device, bf16):
        real_out, fake_out = D(batch["map"], batch["image"]), D(fake.to(batch["map"].dtype), batch["image"])
        loss = discriminator_loss(real_out.logits.float(), fake_out.logits.float())
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return {"loss/D": loss.detach(), "D/acc_real": (real_out.logits > 0).float().mean().detach(),
            "D/acc_fake": (fake_out.logits < 0).float().mean().detach()}


def generator_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, loss_fn: nn.Module, batch: dict,
                   alpha: float, device: torch.device, bf16: bool) -> dict[str, Tensor]:
    """G update: α·content + BCE(D(I, Ŝ), 1); D's parameters get no gradient."""
    D.requires_grad_(False)
    try:
        with autocast(device, bf16):
            out = G(batch["image"])
            content, terms = loss_fn(out.logits, targets_at(batch, out.logits.shape[-2:]), out.output)
            adv = generator_adversarial_loss(D(out.prob, batch["image"]).logits.float())
            total = alpha * content + adv
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
    finally:
        D.requires_grad_(True)
    return {"loss/G": total.detach(), "loss/content": content.detach(), "loss/adversarial": adv.detach(),
            **{f"content/{k}": v for k, v in terms.items()}}
