"""Recommenders: baselines, peers, candidate sources, the ranker; one contract in base.py."""
