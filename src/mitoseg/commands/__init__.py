"""The command lines: ``mitoseg-train``, ``mitoseg-evaluate``, ``mitoseg-segment``,
``mitoseg-study`` and ``mitoseg-report`` (console scripts, also ``python -m
mitoseg.commands.<name>``). The repository's ``train.py`` ... ``report.py`` call the same
functions. This is the top floor of the package: it imports training, evaluation, study and
reporting, and nothing imports it.
"""
