"""omnitalker: shards -- the shard contract: rates, mel spec, code layout, schema and the shared reader."""
