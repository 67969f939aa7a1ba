"""Run train.py, but SIGKILL the process in the middle of training epoch KILL_EPOCH.

Used by test_resume.py as ``python kill_during_training.py <epoch> <train.py overrides>``:
a real kill (no clean-up, no Python exception handling), with the same config as a normal
run, because the kill is patched into the per-epoch seeding callback, not configured.
"""

import os
import runpy
import signal
import sys
from pathlib import Path

import mitoseg.training.train as train_module
from mitoseg.training.seeding import EpochSeeding

REPO = Path(__file__).resolve().parents[2]
KILL_EPOCH = int(sys.argv.pop(1))


class KillingEpochSeeding(EpochSeeding):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == KILL_EPOCH and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)


train_module.EpochSeeding = KillingEpochSeeding
sys.argv[0] = str(REPO / "train.py")
runpy.run_path(str(REPO / "train.py"), run_name="__main__")
