"""Paper 000's robustness/sensitivity study: statistics, figures and the report."""
