"""Launch the t2ue demo: `python demos/app.py [--host 127.0.0.1] [--port 7860]` (same as `t2ue demo`)."""

from t2ue.cli import app

if __name__ == "__main__":
    import sys

    sys.argv.insert(1, "demo")
    app()
