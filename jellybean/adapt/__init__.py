"""Serving changing load (Loki's accuracy and hardware scaling): demand estimates, the runtime
model, and the policies that both the controller (`deploy --adapt`) and the simulator run."""
