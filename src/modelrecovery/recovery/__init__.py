"""The recovery experiment: jobs (simulate, refit every candidate, pick the winner), the
durable results store and the executors (in-process, Dask)."""
