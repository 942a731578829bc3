"""Reading and writing what users own: photos (pixels, metadata) and files written atomically."""
