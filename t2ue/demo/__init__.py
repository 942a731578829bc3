"""The Gradio demo (``t2ue demo``): a zero-contact page and a local tab."""
