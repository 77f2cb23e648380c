"""The course-material assistant, started from Python: a few lines over pdfqa.

    python examples/course_assistant.py [COURSES_DIR] [--port 8000] [--seed]

opens http://127.0.0.1:8000/ — create a course, drop lecture PDFs on it, ask questions, click a
citation to see the page with the quoted passage highlighted. ``--seed`` first builds a course
"Examples" from the PDFs beside this file: a course is a plain pdfqa collection plus its PDFs.
(The command line equivalent: ``pdfqa serve --collection COURSES_DIR``.)
"""
import argparse
import shutil
from pathlib import Path

from pdfqa import Collection
from pdfqa.app import serve
from pdfqa.app.courses import CourseError, CourseManager

HERE = Path(__file__).resolve().parent


def seed(root: Path) -> None:
    """The course "Examples" with examples/*.pdf, indexed now with the library itself."""
    manager = CourseManager(root)
    try:
        course = manager.create("Examples")          # ROOT/examples/{course.json, collection/, files/}
    except CourseError:
        return                                       # seeded before
    finally:
        manager.close()
    for pdf in sorted(HERE.glob("*.pdf")):
        shutil.copyfile(pdf, course.files_dir / pdf.name)   # cited pages are rendered from these
    with Collection.open(course.collection_dir) as col:
        report = col.index([course.files_dir])
    print(f"seeded course 'Examples': {len(report.indexed)} PDFs indexed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", default="courses", type=Path, help="where the courses live")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--seed", action="store_true", help="create an 'Examples' course from examples/*.pdf")
    args = ap.parse_args()
    if args.seed:
        seed(args.root)
    serve(args.root, port=args.port,
          generator="default",                      # offline: SmolLM2 for English, extractive otherwise
          generators=["default", "extractive"],     # what the picker offers (e.g. add "openai:gpt-4o-mini")
          retrievers=["hybrid", "dense", "bm25"],
          max_upload_mb=50, max_pages=500, answer_timeout=120)
