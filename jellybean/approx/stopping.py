"""When the approximate prediction is good enough: Biathlon's stopping rule (Chang et al., PVLDB 2024,
arXiv 2405.11191): stop once the prediction stays within δ of the exact one with
confidence τ, judged on the propagated outputs (``propagate``): the share of draws within δ of the
prediction at the estimates. For a classifier, the share of draws predicting the same class.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from jellybean.approx.errors import ApproxError

Kind = Literal["regression", "classifier"]
KINDS: tuple[str, ...] = ("regression", "classifier")


@dataclass(frozen=True)
class Decision:
    """The rule's verdict on one round of propagated outputs."""

    stop: bool
    confidence: float  # share of draws within delta of the point prediction (same class, for a classifier)
    draws: int
    reason: str


@dataclass(frozen=True)
class StopRule:
    """Stop when P(|prediction - exact| <= delta) >= tau; for ``kind='classifier'``, when
    P(class unchanged) >= tau (``delta`` unused, leave it 0)."""

    tau: float
    delta: float = 0.0
    kind: Kind = "regression"

    def __post_init__(self) -> None:
        if isinstance(self.tau, bool) or not isinstance(self.tau, numbers.Real) or not 0 < self.tau < 1:
            raise ApproxError(f"StopRule.tau {self.tau!r}: give a confidence strictly between 0 and 1 (e.g. 0.95)")
        if (isinstance(self.delta, bool) or not isinstance(self.delta, numbers.Real)
                or not (math.isfinite(self.delta) and self.delta >= 0)):
            raise ApproxError(f"StopRule.delta {self.delta!r}: give a finite bound >= 0 on |prediction - exact|, "
                              "in the model output's unit")
        if self.kind not in KINDS:
            raise ApproxError(f"StopRule.kind {self.kind!r}: give one of {', '.join(KINDS)}")
        if self.kind == "classifier" and self.delta != 0:
            raise ApproxError(f"StopRule.delta {self.delta!r}: a classifier's rule asks that the class not "
                              "change, so delta is unused; leave it 0")

    def decide(self, outputs: ArrayLike, point: float) -> Decision:
        """The verdict on the model's outputs over the propagated draws and its prediction at the estimates."""
        drawn = _outputs(outputs)
        if not math.isfinite(point):
            raise ApproxError(f"decide: point {point!r}: give the model's finite prediction at the estimates")
        if self.kind == "classifier":
            if not (float(point).is_integer() and np.all(drawn == np.round(drawn))):
                raise ApproxError("decide: a classifier's outputs and point must be classes encoded as integers; "
                                  "return the class, or use kind='regression' for scores")
            agree = drawn == point
            what = f"predict class {point:g}"
        else:
            agree = np.abs(drawn - point) <= self.delta
            what = f"are within δ={self.delta:g} of the prediction {point:g}"
        confidence = float(agree.mean())
        stop = confidence >= self.tau
        verdict = "stop" if stop else "continue"
        sign = ">=" if stop else "<"
        return Decision(stop, confidence, drawn.size,
                        f"{verdict}: {confidence:.1%} of {drawn.size} draws {what} ({sign} τ={self.tau:g})")


def _outputs(outputs: ArrayLike) -> np.ndarray:
    drawn = np.asarray(outputs, dtype=float)
    if drawn.ndim != 1 or drawn.size == 0:
        raise ApproxError(f"decide: outputs has shape {drawn.shape}; give the model's outputs on the "
                          "propagated draws, a non-empty 1-d array")
    if not np.all(np.isfinite(drawn)):
        raise ApproxError("decide: outputs has non-finite values; give the model's finite outputs")
    return drawn
