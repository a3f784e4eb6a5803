"""Run under ``torchrun``: ``qlearn train`` (the CLI) as it is, plus an observer that writes what
*this rank* holds at the end (trainable weights and contrastive memories) to ``rank<N>.safetensors``
in the run folder, so the test can compare the ranks. Usage: torchrun ... distributed_worker.py
ARGS-OF-qlearn"""
import os
import sys

import torch


def main():
    import qlearn.trainer as T
    from safetensors.torch import save_file

    class Observed(T.QARTrainer):
        def train(self, *args, **kwargs):
            out = super().train(*args, **kwargs)
            module = self.accelerator.unwrap_model(self.model)
            state = {f"w.{n}": p.detach().cpu().contiguous()
                     for n, p in module.model.named_parameters() if p.requires_grad}
            state.update({f"qc.{k}": v.detach().cpu().contiguous()
                          for k, v in module.contrastive.state_dict().items()})
            rank = int(os.environ.get("RANK", 0))
            save_file(state, os.path.join(self.args.output_dir, f"rank{rank}.safetensors"))
            state_world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
            with open(os.path.join(self.args.output_dir, f"rank{rank}.world"), "w") as f:
                f.write(f"{state_world} {self.args.parallel_mode} {self.state.global_step}")
            return out

    T.QARTrainer = Observed  # qlearn.train.train looks it up in qlearn.trainer when it runs
    from qlearn.cli import main as cli

    cli(sys.argv[1:])


if __name__ == "__main__":
    main()
