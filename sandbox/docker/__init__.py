"""The docker backend: one container per episode, its two shells over the engine's streams.

Imported lazily (through DockerSandboxConfig.open_world): only processes that start
containers load the docker SDK.
"""
