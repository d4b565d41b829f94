"""qwen_daemon: the detached runtime that launches, watches and samples runs."""

__version__ = "0.1.0"
