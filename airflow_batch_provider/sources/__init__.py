"""Where a job's rows come from: each source yields Arrow record batches of the id and text columns,
a bounded number of rows at a time, and refuses input that can never be sent with an
``InvalidRequestError`` that names what to change."""

READ_BATCH_ROWS = 25_000  # rows read and encoded at a time: memory vs per-batch overhead
