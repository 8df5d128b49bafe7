"""The contracts between stages, each defined once, on the ground floor (imports nothing above `nano2.errors`).

- `documents`: the Parquet document schema every curated and synthetic document folder uses, its metadata keys,
  and the token-count rule;
- `chat`: think markers, reasoning switches, IGNORE_INDEX, chat and preference rows (one writer, one validator);
- `shards`: shard file names and where drop decisions live (beside a data folder, never inside);
- `megatron`: the `.bin/.idx` token shard format training reads.
"""
