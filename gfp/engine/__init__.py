"""The training engine: where minibatches come from (`samplers`, `frames`, `replay`), the jitted
chunk of fused updates every sampler plugs into (`chunk`), and the boundary driver that logs,
evaluates, checkpoints and stops, for the offline phase and the online one (`driver`, `online`).
docs/architecture.md draws it."""
