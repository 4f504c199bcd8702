"""Deep supervision: the loss of a model with auxiliary heads.

Real-time networks such as DDRNet train an extra segmentation head on an intermediate feature map
and add its loss with a small weight (DDRNet: ``L = L_main + 0.4 * L_aux``), which speeds up
convergence of the early stages; the head is dropped at inference and export. Models return
:class:`~segsuite.core.models.base.AuxLogits` in training mode (plain logits otherwise), and the
trainer calls :func:`supervised_loss` at its one loss site, so models without auxiliary heads
train exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def supervised_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], output: torch.Tensor | tuple,
                    target: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` on the main logits plus each auxiliary head's loss times its weight (in float32,
    whatever precision autocast computed the logits in)."""
    from .models.base import AuxLogits

    if not isinstance(output, AuxLogits):
        return loss_fn(output.float(), target)
    loss = loss_fn(output.logits.float(), target)
    for aux, weight in zip(output.aux, output.weights):
        loss = loss + weight * loss_fn(aux.float(), target)
    return loss
