"""The HiGHS backend: a model written with pywraplp, solved by highspy.

The model stays written once, in OR-Tools' style (model.py); this module hands its exact numbers to
highspy through OR-Tools' model proto. Text exports are not exact (pywraplp's MPS writer keeps six
significant digits, which once made a feasible model infeasible), and the HiGHS bundled in OR-Tools
is older and several times slower on these models than highspy's.

One ``HighsModel`` is solved many times by the variant decomposition: with bounds changed, as a
relaxation, with a cutoff. HiGHS keeps its simplex basis between those solves.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import highspy
import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

INF = highspy.kHighsInf


@contextlib.contextmanager
def quiet_stdout():
    """Native solver libraries print banners on the process's stdout; keep stdout for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass(frozen=True)
class Progress:
    """What a running solve knows: its best plan ($/h), its proven lower bound, and the time."""

    incumbent: float | None
    bound: float | None
    seconds: float
    stage: str = ""

    @property
    def gap(self) -> float | None:
        if self.incumbent is None or self.bound is None:
            return None
        return max(0.0, self.incumbent - self.bound) / max(abs(self.incumbent), 1e-9)


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class Result:
    status: str  # OPTIMAL | FEASIBLE | INFEASIBLE | CUTOFF | NOT_SOLVED | ABNORMAL
    objective: float | None
    bound: float | None
    values: np.ndarray | None
    seconds: float


_STATUS = {
    highspy.HighsModelStatus.kOptimal: "OPTIMAL",
    highspy.HighsModelStatus.kInfeasible: "INFEASIBLE",
    highspy.HighsModelStatus.kUnboundedOrInfeasible: "INFEASIBLE",
    highspy.HighsModelStatus.kUnbounded: "UNBOUNDED",
    highspy.HighsModelStatus.kObjectiveBound: "CUTOFF",
    highspy.HighsModelStatus.kTimeLimit: "NOT_SOLVED",
    highspy.HighsModelStatus.kInterrupt: "NOT_SOLVED",
    highspy.HighsModelStatus.kSolutionLimit: "NOT_SOLVED",
    highspy.HighsModelStatus.kIterationLimit: "NOT_SOLVED",
}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) and abs(value) < INF else None


class HighsModel:
    def __init__(self, solver: pywraplp.Solver, relative_gap: float = 1e-7, heuristic_effort: float | None = None):
        proto = linear_solver_pb2.MPModelProto()
        solver.ExportModelToProto(proto)
        variables = proto.variable
        n = len(variables)
        lower = np.fromiter((v.lower_bound for v in variables), float, n)
        upper = np.fromiter((v.upper_bound for v in variables), float, n)
        cost = np.fromiter((v.objective_coefficient for v in variables), float, n)
        self.integer = np.fromiter((v.is_integer for v in variables), bool, n)
        starts, index, value, row_lower, row_upper = [0], [], [], [], []
        for c in proto.constraint:
            index.extend(c.var_index)
            value.extend(c.coefficient)
            starts.append(len(index))
            row_lower.append(c.lower_bound)
            row_upper.append(c.upper_bound)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = len(row_lower)
        lp.col_cost_ = cost
        lp.col_lower_ = np.maximum(lower, -INF)
        lp.col_upper_ = np.minimum(upper, INF)
        lp.row_lower_ = np.maximum(np.asarray(row_lower, float), -INF)
        lp.row_upper_ = np.minimum(np.asarray(row_upper, float), INF)
        lp.offset_ = proto.objective_offset
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.asarray(starts, np.int32)
        lp.a_matrix_.index_ = np.asarray(index, np.int32)
        lp.a_matrix_.value_ = np.asarray(value, float)
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                           for i in self.integer]
        self.lower, self.upper = np.maximum(lower, -INF), np.minimum(upper, INF)
        with quiet_stdout():
            h = highspy.Highs()  # prints its banner on stdout before any option can silence it
        h.setOptionValue("output_flag", False)
        h.setOptionValue("mip_rel_gap", relative_gap)
        h.setOptionValue("mip_abs_gap", 1e-9)
        if heuristic_effort is not None:
            h.setOptionValue("mip_heuristic_effort", heuristic_effort)
        h.passModel(lp)
        self.h = h
        self._relaxed = False

    # -- changing the model between solves ------------------------------------------------------
    def set_bounds(self, columns: list[int], lower: list[float], upper: list[float]) -> None:
        if columns:
            self.h.changeColsBounds(len(columns), np.asarray(columns, np.int32),
                                    np.asarray(lower, float), np.asarray(upper, float))

    def restore_bounds(self, columns: list[int]) -> None:
        cols = np.asarray(columns, np.int32)
        self.set_bounds(columns, list(self.lower[cols]), list(self.upper[cols]))

    def relax(self, relaxed: bool) -> None:
        """Solve the LP relaxation (integer columns made continuous) or the MIP again."""
        if relaxed == self._relaxed:
            return
        cols = np.flatnonzero(self.integer).astype(np.int32)
        kind = highspy.HighsVarType.kContinuous if relaxed else highspy.HighsVarType.kInteger
        if len(cols):
            self.h.changeColsIntegrality(len(cols), cols, np.full(len(cols), kind))
        self._relaxed = relaxed

    def hint(self, values: np.ndarray) -> None:
        solution = highspy.HighsSolution()
        solution.col_value = list(values)
        solution.value_valid = True
        self.h.setSolution(solution)

    # -- solving ---------------------------------------------------------------------------------
    def solve(
        self,
        time_limit: float | None = None,
        cutoff: float | None = None,
        on_progress: ProgressFn | None = None,
        stage: str = "",
        clock_start: float | None = None,
    ) -> Result:
        """Solve as the model stands. ``cutoff``: only plans cheaper than this are of interest."""
        h = self.h
        h.setOptionValue("time_limit", float(max(time_limit, 0.01)) if time_limit is not None else INF)
        h.setOptionValue("objective_bound", float(cutoff) if cutoff is not None else INF)
        origin = time.monotonic() if clock_start is None else clock_start
        last = [0.0]
        stop = threading.Event()

        def callback(event) -> None:  # noqa: ANN001 (highspy's event type)
            if stop.is_set():
                event.interrupt()
                return
            kind = event.callback_type
            if on_progress is None or kind == highspy.cb.HighsCallbackType.kCallbackSimplexInterrupt:
                return
            now = time.monotonic()
            # The interrupt callback fires thousands of times a second; the bar needs a few.
            if kind == highspy.cb.HighsCallbackType.kCallbackMipInterrupt and now - last[0] < 0.2:
                return
            last[0] = now
            out = event.data_out
            on_progress(Progress(_finite(out.mip_primal_bound), _finite(out.mip_dual_bound), now - origin, stage))

        events = [h.cbSimplexInterrupt] + ([] if self._relaxed else [h.cbMipInterrupt, h.cbMipImprovingSolution])
        for event in events:
            event.subscribe(callback)
        start = time.perf_counter()
        try:
            self._run(stop)
        finally:
            for event in events:
                event.unsubscribe(callback)
        seconds = time.perf_counter() - start
        status = _STATUS.get(h.getModelStatus(), "ABNORMAL")
        info = h.getInfo()
        has_solution = info.primal_solution_status == highspy.SolutionStatus.kSolutionStatusFeasible
        values = np.asarray(h.getSolution().col_value, float) if has_solution else None
        objective = _finite(info.objective_function_value) if has_solution else None
        if self._relaxed:
            bound = objective if status == "OPTIMAL" else None
        else:
            bound = _finite(info.mip_dual_bound)
        if status == "NOT_SOLVED" and values is not None:
            status = "FEASIBLE"
        if status == "OPTIMAL" and not self._relaxed and bound is None:
            bound = objective
        return Result(status, objective, bound, values, seconds)

    def _run(self, stop: threading.Event) -> None:
        """Solve in a thread, so that Ctrl-C reaches Python at once and stops the search cleanly."""
        done = threading.Event()

        def target() -> None:
            try:
                self.h.run()
            finally:
                done.set()

        threading.Thread(target=target, name="highs", daemon=True).start()
        try:
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            stop.set()  # the next callback interrupts HiGHS
            done.wait()
            raise
