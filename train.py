"""Train, validate and test one configuration (or a multirun): a thin wrapper of mitoseg.training
(``mitoseg-train`` after ``pip install``, from any folder).

    python train.py                              # U-Net on embedded synthetic data, CPU
    python train.py model=fcn_paper000 dataset.condition.snr=1
    python train.py -m seed=0..9                 # ten runs, seeds 0 to 9
    python train.py model=attention_unet -m seed=0..9   # the flag may sit between overrides
"""

from mitoseg.commands.train import run

if __name__ == "__main__":
    run()
