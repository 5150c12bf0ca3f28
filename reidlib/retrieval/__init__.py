"""Search with a trained run: embed a folder of crops, rank a gallery, draw the page."""
