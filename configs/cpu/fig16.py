"""CPU counterpart of Fig 16: recovery after more and more pretraining.

The revisions of the offline pretraining (configs/pretrain/neox_small.py, like Pythia's step6000 ... main):
step0 (the init, never trained), step30, step100, step300 and step600 (the final model; 2048 tokens a
step), each fine-tuned on the CPU protocol (configs/cpu/base.py). The paper: more pretraining steps, more
anticipatory recovery. Measured (3 seeds): 0.589 / 0.536 / 0.468 / 0.351 / 0.444 -- RS falls with this little
pretraining (1.2 M tokens at most; the paper's first checkpoint has seen 12 B). step600 is the checkpoint
configs/cpu/fig2a.py loads (the same files), so `--reuse` copies fig2a's pretrained runs for it.

    python -m recovery_jax.pretrain --config configs/pretrain/neox_small.py --workdir runs/pretrain/neox_small
    python -m recovery_jax.sweep --config configs/cpu/fig16.py --workdir runs/cpu/fig16 --reuse runs/cpu
"""

from recovery_jax.config import derive


def get_config():
    return derive(__file__, "fig2a.py")


def get_sweep():
    return {"grid": {"model.revision": ["step0", "step30", "step100", "step300", "step600"]}, "seeds": [0, 1, 2]}
