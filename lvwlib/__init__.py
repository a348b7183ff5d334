"""lvwlib: Learnable Visual Words (LVW) and its baselines, on cached CNN features."""

__version__ = "0.1.0"
