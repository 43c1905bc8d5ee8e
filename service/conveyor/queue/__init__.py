"""The queue engine: enqueue, claim, run, record, and the housekeeping around them."""
