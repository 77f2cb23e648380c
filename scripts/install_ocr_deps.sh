#!/bin/sh
# What OCR (pdfqa.pdf.ocr, tests/test_ocr.py) needs from the system, installed once: Tesseract 5 and its
# Japanese (horizontal and vertical), English and orientation-detection data, from Debian's packages.
# The Python binding (tesserocr) comes with pdfqa[ocr]. `make demo` does not need any of this.
# fonts-ipaexfont-gothic: only for the test that typesets a vertical Japanese page.
# Idempotent: does nothing when everything is there. Run as root on a fresh Debian machine, or as a
# user with sudo. Only the Debian package registry needs to be reachable.
set -eu

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

apt_packages=""
for pkg in tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-eng tesseract-ocr-osd fonts-ipaexfont-gothic; do
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_packages="$apt_packages $pkg"
done

if [ -n "$apt_packages" ]; then
  echo "install_ocr_deps: apt-get install$apt_packages"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y $apt_packages
fi

echo "install_ocr_deps: ok ($(tesseract --version 2>&1 | head -1); languages: $(tesseract --list-langs 2>/dev/null | tail -n +2 | tr '\n' ' '))"
