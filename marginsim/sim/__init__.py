"""The crash simulator: scenario, agents, the loop, metrics and report."""
