"""Tables and the report: mIoU tables, figures, HTML tables, benchmark summaries, published numbers."""
