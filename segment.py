"""Segment your own images with a trained checkpoint: a thin wrapper of mitoseg.evaluation
(``mitoseg-segment`` after ``pip install``, from any folder).

    python segment.py ckpt_path=<run>/checkpoints/best.ckpt input=<image, stack or folder>
"""

from mitoseg.commands.segment import run

if __name__ == "__main__":
    run()
