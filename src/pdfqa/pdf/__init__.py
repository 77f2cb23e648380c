"""PDF readers and the text-quality check."""
from .quality import assess_page_text
from .reader import DEFAULT_READER, READERS, file_sha256, read_pdf

__all__ = ["DEFAULT_READER", "READERS", "assess_page_text", "file_sha256", "read_pdf"]
