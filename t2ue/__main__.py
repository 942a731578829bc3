from t2ue.cli import app

app()
