"""Chain backends the protocol runs on: ape (any network) and revm in process (`revm`)."""
