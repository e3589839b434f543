"""The runtime a backend may use: the engine thread, the step scheduler, async plumbing, CPU defaults."""
