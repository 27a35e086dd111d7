"""The ground floor: the contracts every other package shares, importing nothing of ours.

- `storage`: every file access, local or `gs://` (no TensorFlow).
- `schema`: the pretraining TFRecord schema (google-research/bert's), for writer and reader.
- `metadata`: the `metadata.json` written last beside every output set, and read back.
- `hashing`: stable hashes and per-key random streams (the determinism contract).
- `lines`: chunked line reading with UTF-8 repair.
"""
