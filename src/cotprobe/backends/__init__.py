"""Model backends, registered lazily so that resolving one (or its version) never imports torch."""

from cotprobe.registry import Registry

BACKENDS = Registry("backend")
BACKENDS.register("hf", "cotprobe.backends.hf:HFBackend")
BACKENDS.register("vllm", "cotprobe.backends.vllm:VLLMBackend")
BACKENDS.register("openai", "cotprobe.backends.openai_compat:OpenAIBackend")
BACKENDS.register("dummy", "cotprobe.backends.dummy:DummyBackend")
