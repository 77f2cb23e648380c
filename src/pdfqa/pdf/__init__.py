"""PDF readers and the text-quality check."""
from .ocr import OCR_MODES, OcrSettings, ocr_unavailable
from .quality import assess_page_text
from .reader import DEFAULT_READER, READERS, file_sha256, read_pdf

__all__ = ["DEFAULT_READER", "OCR_MODES", "OcrSettings", "ocr_unavailable", "READERS", "assess_page_text", "file_sha256", "read_pdf"]
