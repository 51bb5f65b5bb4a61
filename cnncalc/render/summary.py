"""The training and receptive-field lines shared by the table and Markdown views."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .values import nbytes, per_dim, pretty, si

if TYPE_CHECKING:
    from ..analysis import Analysis


def with_si(value) -> str:
    unit = si(value)
    return f"{pretty(value)} ({unit})" if unit else pretty(value)


def training_cells(r) -> tuple[str, ...]:
    return ("yes" if r.frozen else "", pretty(r.backward_input_macs),
            pretty(r.backward_weight_macs), pretty(r.saved_bytes))


def field_cells(field) -> tuple[str, ...]:
    if field is None:
        return ("—", "", "")
    return per_dim(field.size), per_dim(field.jump), per_dim(field.start)


def training_summary(a: Analysis) -> list[tuple[str, str]]:
    """The training step's totals as (label, text) lines; shared with Markdown."""
    t = a.total
    lines = [("training", f"optimizer {a.optimizer}, {a.dtype}, frozen: {a.freeze or 'none'} "
              f"({pretty(t['non_trainable_params'])} of {pretty(t['params'])} params)"),
             ("backward MACs", f"{with_si(t['backward_macs'])} = "
              f"{pretty(t['backward_input_macs'])} input gradients + "
              f"{pretty(t['backward_weight_macs'])} weight gradients" + (
                  f" + {pretty(t['backward_recompute_macs'])} forward run again "
                  "(checkpointed)" if t["backward_recompute_macs"] != 0 else "")),
             ("params memory", nbytes(t["param_bytes"]) + " (+ buffers "
              + nbytes(t["buffer_bytes"]) + ")"),
             ("gradients", nbytes(t["grad_bytes"])),
             ("optimizer state", nbytes(t["optimizer_bytes"])),
             ("kept for backward", nbytes(t["saved_bytes"])
              + " (activations autograd saves, each tensor once)"),
             ("training memory", nbytes(t["training_bytes"]))]
    if a.freezing_saves is not None:
        s = a.freezing_saves
        lines.append(("freezing saves", f"{with_si(s['backward_macs'])} backward MACs; "
                      f"{nbytes(s['training_bytes'])} of memory (gradients "
                      f"{nbytes(s['grad_bytes'])}, optimizer state "
                      f"{nbytes(s['optimizer_bytes'])}, kept activations "
                      f"{nbytes(s['saved_bytes'])})"))
    return lines


def receptive_summary(a: Analysis) -> str:
    field, index = a.total["receptive_field"], a.total["receptive_field_layer"]
    if field is None:
        return "none (no layer keeps the input's spatial grid)"
    row = a.layers[index]
    return (f"{per_dim(field.size)} input pixels at layer {index} ({row.name}); jump "
            f"{per_dim(field.jump)}, start {per_dim(field.start)}")
