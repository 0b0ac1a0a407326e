"""The office's documents, rendered from the records of `gateway.flows.report_docs`: CSV, Word
(python-docx), PDF (reportlab, built-in CID font STSong-Light: no system font needed), HTML, and
the after-action chart (matplotlib). Pure and blocking: callers run them in an executor."""
