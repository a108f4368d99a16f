"""Datasets: generated offline with OGBench's oracles (`generate`), loaded from OGBench .npz,
D4RL-style HDF5, Minari or plain .npz (`load`), validated on every load (`validate`)."""
