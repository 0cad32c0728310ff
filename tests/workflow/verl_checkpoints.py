"""Write the FSDP checkpoints that verl's trainer would save for a prepared run; run in ``.venv-verl``.

``python verl_checkpoints.py OVERRIDE...`` composes verl's ``ppo_trainer`` config with the run's
overrides, taken as ``python -m verl.trainer.main_ppo OVERRIDE...`` takes them, and, at every step
where ``RayPPOTrainer`` saves (``save_freq > 0`` and the step a multiple of it, or the last step),
saves the actor through verl's own ``FSDPCheckpointManager`` into
``<trainer.default_local_dir>/global_step_<N>/actor`` (the path ``RayPPOTrainer._save_checkpoint``
builds), with the actor's ``checkpoint`` config and ``trainer.max_actor_ckpt_to_keep``.

One actor and one checkpoint manager for the run, as the trainer's worker holds them: the base model
at ``actor_rollout_ref.model.path`` in fp32 (``fsdp_config.model_dtype``), each parameter set to the
base's plus ``N / 1024`` before step N is saved, so that each step's weights differ. What
differs from a GPU run: one process, gloo on a CPU mesh of the same shape and name (``fsdp``, world
size 1) and FSDP2 (verl's ``apply_fsdp2``), since torch's FSDP1 needs an accelerator; both strategies
save the same DTensor shards, which the merger reads alike. Prints ``{"steps": [...], "dir": ...}``.
"""

import importlib.util
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
from hydra import compose, initialize_config_dir
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy
from transformers import AutoModelForImageTextToText
from verl.utils import hf_processor
from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager
from verl.utils.fsdp_utils import apply_fsdp2


def main(overrides: list[str]) -> None:
    config_dir = os.path.join(os.path.dirname(importlib.util.find_spec("verl").origin), "trainer/config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose("ppo_trainer", overrides=overrides)
    trainer, actor = cfg.trainer, cfg.actor_rollout_ref.actor
    assert actor.fsdp_config.model_dtype == "fp32", actor.fsdp_config.model_dtype
    total, freq = int(trainer.total_training_steps), int(trainer.save_freq)
    steps = [n for n in range(1, total + 1) if freq > 0 and (n % freq == 0 or n == total)]
    path = cfg.actor_rollout_ref.model.path
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=0, world_size=1)
        mesh = init_device_mesh("cpu", mesh_shape=(1,), mesh_dim_names=["fsdp"])
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
        base = {name: p.detach().clone() for name, p in model.named_parameters()}
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        apply_fsdp2(model, {"mesh": mesh, "reshard_after_forward": True, "mp_policy": policy}, {})
        # One manager for the whole run, as the trainer's worker holds: it prunes to max_ckpt_to_keep.
        manager = FSDPCheckpointManager(
            model=model,
            optimizer=torch.optim.AdamW(model.parameters(), lr=float(actor.optim.lr)),
            processing_class=hf_processor(path),
            checkpoint_config=actor.checkpoint,
        )
        for n in steps:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    local = p.to_local()  # world size 1: the whole parameter
                    assert local.shape == base[name].shape, name
                    local.copy_(base[name] + n / 1024)
            local_path = os.path.join(trainer.default_local_dir, f"global_step_{n}", "actor")
            manager.save_checkpoint(
                local_path, global_step=n, max_ckpt_to_keep=trainer.max_actor_ckpt_to_keep
            )
        dist.destroy_process_group()
    print(json.dumps({"steps": steps, "dir": trainer.default_local_dir}))


if __name__ == "__main__":
    main(sys.argv[1:])
