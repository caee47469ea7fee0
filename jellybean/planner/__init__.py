"""Planner stages: build the problem, build the model, solve, extract the plan, render."""
