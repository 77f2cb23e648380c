"""CER by line at 150 dpi: pdfqa's OCR path on each page image as rendered and upscaled (LANCZOS) by the given
factors.

    PYTHONPATH=src .venv/bin/python benchmarks/ocr_upscale.py en_slides,layout 1,1.5,2
"""
import os, sys, statistics
os.environ["OMP_THREAD_LIMIT"] = "1"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from PIL import Image
import ocr_bench as ob

eng = ob.Engines("jpn+eng")
sets = sys.argv[1].split(",") if len(sys.argv) > 1 else ["en_slides", "layout"]
factors = [float(x) for x in (sys.argv[2].split(",") if len(sys.argv) > 2 else ["1", "2"])]
for set_name in sets:
    lang, files = ob.CER_SETS[set_name]
    tot = {f: [0.0, 0] for f in factors}
    cpu = {f: 0.0 for f in factors}
    for f in files:
        for i in ob.page_ids(f):
            gray, ref, s, chars = ob.render(f, i, 150)
            if len("".join(ref.split())) < 20:
                continue
            n = len("".join(ob.norm(ref).split()))
            for fac in factors:
                g = gray if fac == 1 else np.asarray(Image.fromarray(gray).resize(
                    (int(gray.shape[1] * fac), int(gray.shape[0] * fac)), Image.LANCZOS))
                t = ob.cpu_seconds()
                text, lines = eng.tesserocr(g, s / fac, {"ja": "jpn", "en": "eng"}[lang])
                cpu[fac] += ob.cpu_seconds() - t
                sc = ob.scores(text, lines, ref, chars, 0)
                tot[fac][0] += sc[1] * n
                tot[fac][1] += n
    for fac in factors:
        print(set_name, fac, "CER by line %.4f" % (tot[fac][0] / tot[fac][1]), "cpu %.1f s" % cpu[fac], flush=True)
