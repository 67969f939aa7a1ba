"""Paper 000's robustness and sensitivity study as one command: a thin wrapper of
mitoseg.study (``mitoseg-study`` after ``pip install``, from any folder).

    python study.py                                  # quick preset (CPU, minutes)
    python study.py study_preset=paper               # the paper's protocol, real masks, GPU
    python study.py analyze_only=<study folder>      # analysis and report only
"""

from mitoseg.commands.study import run

if __name__ == "__main__":
    run()
