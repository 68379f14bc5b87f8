"""Which weights ``best/`` holds, and the run report that compares them with the starting weights.

Every validation of a run (the starting weights at step 0 first) is one entry of :attr:`Selection.history`:
its step, validation loss, the task's metric and, for a predictor, forecast scores on the validation tails.
``best/`` holds the entry with the lowest selection value: the forecast CRPS (``select_by="crps"``) or the task's
validation metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .quality import paired_change

SCORE_KEYS = ("crps_rel", "coverage_80", "coverage_50")  # the forecast scores kept per validation
STATE_KEYS = ("best_value", "best_step", "history", "start_calibrated", "start_per_origin")  # saved in checkpoints


@dataclass
class Selection:
    """The validations of one run and the best one so far.

    ``by`` is ``"crps"`` or ``"loss"``; ``best_metric`` the task's validation metric; ``forecasts`` whether the
    run scores forecasts. ``start_calibrated`` holds the starting weights' calibrated forecast scores,
    ``start_per_origin`` their per-origin CRPS (the pairs each later CRPS change is measured on).
    """

    by: str
    best_metric: str
    forecasts: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best_value: float = math.inf
    best_step: int | None = None
    start_calibrated: dict[str, float] | None = None
    start_per_origin: list[float] | None = None

    @property
    def metric(self) -> str:
        """The history key ``best/`` is chosen by."""
        return "crps_rel" if self.by == "crps" and self.forecasts else self.best_metric

    def record(self, step: int, val: dict[str, float], forecast: dict[str, Any] | None) -> tuple[dict[str, float],
                                                                                                  float]:
        """Add one validation; returns its forecast scores (with the CRPS change from the start and its standard
        error once there is a start) and its selection value."""
        scores = {k: forecast[k] for k in SCORE_KEYS} if forecast else {}
        if forecast and step == 0 and not self.history:
            self.start_per_origin = list(forecast["per_origin"])
        elif forecast and self.start_per_origin:
            change, error = paired_change(self.start_per_origin, forecast["per_origin"])
            scores.update(crps_change=change, crps_change_se=error)
        self.history.append({"step": step, "loss": val["loss"], self.best_metric: val[self.best_metric], **scores})
        value = scores["crps_rel"] if self.by == "crps" and forecast else val[self.best_metric]
        return scores, value

    def beats_trained(self, value: float) -> bool:
        """Whether ``value`` (of the latest validation) is below every earlier trained (step > 0) one."""
        trained = [h[self.metric] for h in self.history[:-1] if h["step"] > 0]
        return value < min(trained, default=math.inf)

    def improve(self, value: float, step: int) -> bool:
        """Take ``value`` at ``step`` as the best when it is lower than the best so far; returns whether it was."""
        if value < self.best_value:
            self.best_value, self.best_step = value, step
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in STATE_KEYS}

    def load(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint's state (older checkpoints may lack some keys)."""
        self.best_value, self.best_step = float(state["best_value"]), state.get("best_step")
        self.history = list(state.get("history") or [])
        self.start_calibrated = state.get("start_calibrated")
        self.start_per_origin = state.get("start_per_origin")

    def report(self, steps: int, forecast_origins: int, horizon: int, samples: int,
               score_best_trained: Callable[[], dict[str, float]] | None = None) -> dict[str, Any] | None:
        """Start against ``best/`` and the best trained entry (None without a validation at step 0).

        ``score_best_trained`` gives the calibrated forecast scores of the best trained weights, when kept.
        """
        if not self.history or self.history[0]["step"] != 0:
            return None
        metric = self.metric
        start = dict(self.history[0])
        best = next((dict(h) for h in self.history if h["step"] == self.best_step), start)
        trained = [h for h in self.history if h["step"] > 0 and metric in h]
        best_trained = dict(min(trained, key=lambda h: h[metric])) if trained else None
        if self.forecasts and self.start_calibrated is not None:
            start["calibrated"] = self.start_calibrated
            if best_trained is not None and score_best_trained is not None:
                best_trained["calibrated"] = score_best_trained()
            if best["step"] == 0:
                best["calibrated"] = self.start_calibrated
            elif best_trained is not None and best["step"] == best_trained["step"]:
                best["calibrated"] = best_trained.get("calibrated")
        report = {"select_by": self.by if metric == "crps_rel" else "loss", "metric": metric,
                  "steps": steps, "start": start, "best": best, "best_trained": best_trained,
                  "forecast_origins": forecast_origins, "horizon": horizon, "samples": samples}
        if best_trained is None:
            report["improved"] = None
            report["verdict"] = "no trained checkpoint was validated; best/ holds the starting weights"
            return report
        report.update(_verdict(metric, start, best, best_trained, forecast_origins))
        return report


def _verdict(metric: str, start: dict[str, Any], best: dict[str, Any], best_trained: dict[str, Any],
             origins: int) -> dict[str, Any]:
    """improved, change, change_se (when known), within_noise and the verdict line of a report."""
    name = {"crps_rel": "validation CRPS", "loss": "validation loss"}.get(metric, f"validation {metric}")
    before, after = start[metric], best_trained[metric]
    change = (after - before) / abs(before) if before else float("nan")
    out: dict[str, Any] = {"improved": bool(after < before), "change": change}
    error = best_trained.get("crps_change_se") if metric == "crps_rel" else None
    noise = ""
    if error is not None and math.isfinite(error):
        out["change_se"] = error
        noise = f" ± {error:.1%} (standard error over {origins} origins)"
    out["within_noise"] = bool(error is not None and math.isfinite(error) and abs(after - before) < 2 * error
                               * abs(before))
    if after < before and out["within_noise"]:
        out["verdict"] = (f"training did not clearly beat the starting weights: {name} {before:.5g} -> "
                          f"{after:.5g} ({change:+.1%}{noise}) at step {best_trained['step']} is within "
                          f"twice its standard error; check more origins (val_forecast_origins=) or held-out "
                          f"data before trusting it; best/ holds step {best['step']}")
    elif after < before:
        out["verdict"] = (f"training beat the starting weights: {name} {before:.5g} -> {after:.5g} "
                          f"({change:+.1%}{noise}) at step {best_trained['step']}; best/ holds step "
                          f"{best['step']}")
    else:
        out["verdict"] = (f"training did not beat the starting weights: the best trained checkpoint (step "
                          f"{best_trained['step']}) has {name} {after:.5g} against {before:.5g} "
                          f"({change:+.1%}{noise}); best/ holds the starting weights")
    return out


def describe(entry: dict[str, Any]) -> str:
    """One validation entry as text: its loss, and CRPS and coverage when forecasts were scored."""
    parts = [f"validation loss {entry['loss']:.5g}"]
    if "crps_rel" in entry:
        parts.append(f"CRPS {entry['crps_rel']:.5g}, 80% coverage {entry['coverage_80']:.3f}")
    return "; ".join(parts)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The run report as lines for people: the starting weights against the best trained checkpoint, then
    the verdict and what best/ holds."""
    start, trained = report["start"], report.get("best_trained")
    lines = [f"validation before step 0 and during {report['steps']} training steps; best/ is step "
             f"{report['best']['step']} (chosen by {report['select_by']})"]
    if trained is None:
        lines.append(report["verdict"])
        return lines
    column = f"trained (step {trained['step']})"
    lines.append(f"  {'':<30}{'start':>10}  {column:>18}  change")

    def row(name: str, key: str, fmt: str, a: dict | None, b: dict | None, relative: bool) -> None:
        if not a or not b or key not in a or key not in b:
            return
        x, y = a[key], b[key]
        change = f"{(y - x) / abs(x):+.1%}" if relative and x else f"{y - x:+.3f}"
        lines.append(f"  {name:<30}{x:>10{fmt}}  {y:>18{fmt}}  {change}")

    row("validation loss", "loss", ".5g", start, trained, True)
    if report["metric"] not in ("crps_rel", "loss"):
        row(f"validation {report['metric']}", report["metric"], ".5g", start, trained, True)
    row("CRPS (share of last close)", "crps_rel", ".5g", start, trained, True)
    row("80% coverage", "coverage_80", ".3f", start, trained, False)
    row("CRPS, calibrated", "crps_rel", ".5g", start.get("calibrated"), trained.get("calibrated"), True)
    row("80% coverage, calibrated", "coverage_80", ".3f", start.get("calibrated"), trained.get("calibrated"), False)
    if report.get("forecast_origins"):
        lines.append(f"  (forecasts at {report['forecast_origins']} origins of the validation tails, "
                     f"{report['horizon']} bars ahead, {report['samples']} paths each)")
    lines.append(report["verdict"])
    return lines
