"""Datasets: loaded from OGBench .npz, D4RL-style HDF5, Minari or plain .npz (`load`), validated
on every load (`validate`). Generating OGBench's datasets offline is gfp.datagen's job."""
