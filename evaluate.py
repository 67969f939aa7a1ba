"""Score a trained checkpoint on a dataset split: a thin wrapper of mitoseg.evaluation
(``mitoseg-evaluate`` after ``pip install``, from any folder).

    python evaluate.py ckpt_path=outputs/runs/default/<run>/checkpoints/best.ckpt
"""

from mitoseg.commands.evaluate import run

if __name__ == "__main__":
    run()
