"""Dataset generation: OGBench's datasets made offline with its scripted oracles (`generate`; the
oracles in `collectors`, parallel shards in `shards`, pixel rows in `visual`). Loading the files it
writes is gfp.data's job."""
