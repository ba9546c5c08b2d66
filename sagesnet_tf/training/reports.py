"""What a training run leaves for people: ``metrics.json`` and loss-curve PNGs.

``metrics.json`` (written atomically after every validation) holds::

    {"name": run name, "stages": [stage names in order],
     "history": [{"stage": str, "step": global step, "stage_step": int,
                  "split": "train" | "validation", <metric>: float, ...}, ...],
     "final": {stage name: {<metric>: float of its last validation}},
     "summary": {free-form figures added by the caller, e.g. rollout accuracy}}

``loss_curves.png`` plots each stage's training and validation loss against the global step
(log scale), one panel per stage.
"""

from __future__ import annotations

import json
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sagesnet_tf.analysis.plots import save_figure  # noqa: E402
from sagesnet_tf.io import atomic_output  # noqa: E402


class MetricsLog:
    """Accumulates metrics of a run and writes ``metrics.json`` / ``loss_curves.png`` in ``run_dir``.

    On resume, :meth:`load` reads the previous history, dropping records past the restored step
    (they were logged after the checkpoint the run continues from).
    """

    def __init__(self, run_dir: str, name: str, stages: list[str]):
        self.run_dir = run_dir
        self.data: dict[str, Any] = {"name": name, "stages": list(stages), "history": [], "final": {}, "summary": {}}

    @property
    def path(self) -> str:
        return os.path.join(self.run_dir, "metrics.json")

    def load(self, up_to_step: int) -> None:
        """Continue a previous run's log, keeping records with ``step <= up_to_step``."""
        if not os.path.isfile(self.path):
            return
        with open(self.path, encoding="utf-8") as fh:
            old = json.load(fh)
        self.data["history"] = [r for r in old.get("history", []) if r["step"] <= up_to_step]
        self.data["final"] = old.get("final", {})
        self.data["summary"] = old.get("summary", {})

    def record(self, stage: str, step: int, stage_step: int, split: str, metrics: dict[str, float]) -> None:
        """Add one row; validation rows also become the stage's ``final`` figures."""
        row = {"stage": stage, "step": int(step), "stage_step": int(stage_step), "split": split}
        row.update({k: float(v) for k, v in metrics.items()})
        self.data["history"].append(row)
        if split == "validation":
            self.data["final"][stage] = {k: float(v) for k, v in metrics.items()}

    def summarize(self, **figures: Any) -> None:
        """Add free-form result figures (e.g. ``rollout_accuracy=1.0``) to ``summary``."""
        self.data["summary"].update(figures)

    def write(self) -> None:
        """Write ``metrics.json`` and ``loss_curves.png`` atomically."""
        with atomic_output(self.path) as fh:
            fh.write(json.dumps(self.data, indent=1))
        self.plot(os.path.join(self.run_dir, "loss_curves.png"))

    def plot(self, path: str) -> None:
        """Loss against global step, one panel per stage, training and validation curves."""
        stages = self.data["stages"]
        fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.2), squeeze=False)
        for ax, stage in zip(axes[0], stages):
            for split, style in (("train", "-"), ("validation", "o-")):
                rows = [r for r in self.data["history"] if r["stage"] == stage and r["split"] == split and "loss" in r]
                if rows:
                    ax.plot([r["step"] for r in rows], [max(r["loss"], 1e-12) for r in rows], style, ms=3, label=split)
            ax.set_title(stage)
            ax.set_xlabel("global step")
            ax.set_ylabel("loss")
            ax.set_yscale("log")
            if ax.lines:
                ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, path, dpi=90)
