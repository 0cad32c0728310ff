"""verl backend (multi-GPU GRPO): placeholder version, filled in below."""

VERL_BACKEND_VERSION = 1
