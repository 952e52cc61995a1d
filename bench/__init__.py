"""bench: benchmark training methods for imbalanced, fine-grained image classification.

Data flow: CLI options -> config (:mod:`bench.config`) -> grid of runs (:mod:`bench.grid`) -> one run
(:mod:`bench.runner`: data, backbone, loss, :mod:`bench.engine`) -> run folder (:mod:`bench.results`)
-> leaderboard (the top-level ``reports`` package).
"""

__version__ = "0.1.0"
