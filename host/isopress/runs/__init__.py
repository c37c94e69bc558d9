"""Run records: one folder per press run, and the ``isopress runs`` commands that read them."""
